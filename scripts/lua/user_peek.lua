-- user_peek.lua: what user_allow.lua would decide for one user right now,
-- without deciding: it writes nothing, so an operator may look as often as
-- they like without counting a request or extending a TTL.
--
-- KEYS[1]  the user's state key, laid out as in user_allow.lua:
--          floodgate:{u:<user>}:w (window on) or :cd (cooldown only)
-- ARGV[1]  limit: accepted requests per window, 0..127 (0: no window)
-- ARGV[2]  window length in ms
-- ARGV[3]  cooldown in ms (0: no cooldown)
--
-- Returns seven integers:
--   ok              1; -1 when the key is not a Floodgate key (then the
--                   rest are 0)
--   reason          what would deny a request now: 0 none, 1 cooldown,
--                   2 window (the longer wait when both deny)
--   remaining       requests the window would still admit (-1: no window)
--   retry_after_ms  0 when a request now would pass, else the wait
--   reset_after_ms  until the user's state is gone (0: nothing held)
--   cooldown_ms     cooldown left, 0 when over
--   entries         live entries in the window (0 without a window)
-- The clock is Redis TIME, with user_allow.lua's skew rule: a window whose
-- newest entry is ahead of TIME is read at that entry's time.

local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cooldown = tonumber(ARGV[3])

if limit == 0 then
  local ttl = redis.call('PTTL', key)
  if ttl == -2 then
    return {1, 0, -1, 0, 0, 0, 0}
  end
  if ttl < 0 then
    -- No TTL: user_allow.lua repairs ours (value '1') with a full cooldown
    -- on the next request; anything else is not ours.
    if redis.pcall('GET', key) ~= '1' then
      return {-1, 0, 0, 0, 0, 0, 0}
    end
    ttl = cooldown
  end
  -- The TTL is the wait, as user_allow.lua answers it, even when a longer
  -- cooldown set it.
  if ttl < 1 then ttl = 1 end -- the key's last millisecond, as user_allow.lua
  return {1, 1, -1, ttl, ttl, ttl, 0}
end

local z = redis.pcall('ZRANGE', key, 0, -1, 'WITHSCORES')
if z.err then
  return {-1, 0, 0, 0, 0, 0, 0}
end
if #z == 0 then
  return {1, 0, limit, 0, 0, 0, 0}
end
if z[#z - 1] ~= 'b' then
  return {-1, 0, 0, 0, 0, 0, 0}
end
local base = tonumber(z[#z])
local n = #z / 2 - 1

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local real = now
local newest = nil
if n > 0 then
  newest = base + tonumber(z[2 * n])
  if now < newest then now = newest end
end
local skew = now - real

local cutoff = now - window
local expired = 0
while expired < n and base + tonumber(z[2 * expired + 2]) <= cutoff do
  expired = expired + 1
end
local count = n - expired
if count == 0 then
  return {1, 0, limit, 0, 0, 0, 0}
end

local cwait = 0
if cooldown > 0 then
  cwait = newest + cooldown - now
  if cwait < 0 then cwait = 0 end
end
local wwait = 0
if count >= limit then
  local i = expired + count - limit + 1
  wwait = base + tonumber(z[2 * i]) + window - now
end
local remaining = limit - count
if remaining < 0 then remaining = 0 end
local reset = newest + window - now + skew
local cleft = 0
if cwait > 0 then cleft = cwait + skew end
if cwait > 0 or wwait > 0 then
  local reason, retry = 1, cwait
  if wwait > cwait then reason, retry = 2, wwait end
  retry = retry + skew
  if skew > 0 then
    -- As user_allow.lua: no wait outlasts the key's TTL.
    local ttl = redis.call('PTTL', key)
    if ttl >= 0 then
      if ttl < 1 then ttl = 1 end
      if retry > ttl then retry = ttl end
      if reset > ttl then reset = ttl end
      if cleft > ttl then cleft = ttl end
    end
  end
  return {1, reason, remaining, retry, reset, cleft, count}
end
return {1, 0, remaining, 0, reset, cleft, count}
