-- lib/budget_capped.lua: capped(w), a wait of w ms on the key's clock as
-- handed back: stretched by skew (how far the key's clock, its newest
-- entry, is ahead of Redis TIME after a step back) but never outlasting
-- the key, whose TTL runs in real time, and at least 1 ms. For
-- budget_reserve.lua and budget_peek.lua; reads key and skew. A function,
-- as lib/budget_parse.lua is: a denial caps two waits.
local function capped(w)
  w = w + skew
  if skew > 0 then
    local ttl = redis.call('PTTL', key)
    if ttl >= 0 then
      if ttl < 1 then ttl = 1 end
      if w > ttl then w = ttl end
    end
  end
  if w < 1 then w = 1 end
  return w
end
