-- lib/user.lua (included by user_allow.lua and user_peek.lua): the
-- per-user decision, written once so that Peek reports what Allow decides.

-- user_wait: what denies a request at now, and for how long: the cooldown
-- runs from newest (the newest entry), the window until oldest (the entry
-- that must age out first, nil while the window has room) is window old.
-- Returns reason (0 none, 1 cooldown, 2 window: the longer wait when both
-- deny) and the wait in ms (0 when nothing denies).
local function user_wait(cooldown, window, newest, oldest, now)
  local cwait, wwait = 0, 0
  if cooldown > 0 then cwait = newest + cooldown - now end
  if oldest then wwait = oldest + window - now end
  if wwait > 0 and wwait > cwait then return 2, wwait end
  if cwait > 0 then return 1, cwait end
  return 0, 0
end

-- within_ttl: after Redis TIME stepped back, the key's clock (its newest
-- entry) is ahead of TIME, and the waits computed on it are stretched by
-- the skew; its TTL may not have stretched with it (it was set before
-- the step), and once the key is gone the user starts afresh, so no wait
-- outlasts it. Returns a and b (and c when given) capped at the key's
-- PTTL, at least 1 ms.
local function within_ttl(key, a, b, c)
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then return a, b, c end
  if ttl < 1 then ttl = 1 end
  if c and c > ttl then c = ttl end
  return math.min(a, ttl), math.min(b, ttl), c
end

-- cooldown_ttl: a cooldown-only key's wait, given its PTTL, or -1 when
-- the key is not ours. Ours always has a TTL: one without belongs to
-- someone else unless its value is '1' (ours, its TTL lost by hand: the
-- full cooldown). pcall: GET on another type is an error reply, not '1'.
-- PTTL rounds down, 0 in the key's last millisecond: a denial always
-- carries a wait of at least 1 ms.
local function cooldown_ttl(key, ttl, cooldown)
  if ttl == -1 then
    if redis.pcall('GET', key) ~= '1' then return -1 end
    return cooldown
  end
  if ttl < 1 then return 1 end
  return ttl
end
