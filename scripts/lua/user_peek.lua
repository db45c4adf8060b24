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
-- The clock is Redis TIME, with user_allow.lua's rounding (nothing ends
-- early: waits are rounded up) and skew rule: a window whose newest entry
-- is ahead of TIME rounded up is read at that entry's time.

local key = KEYS[1]
local limit = ARGV[1] + 0
local window = ARGV[2] + 0
local cooldown = ARGV[3] + 0

if limit == 0 then
  local ttl = redis.call('PTTL', key)
  if ttl == -2 then
    return {1, 0, -1, 0, 0, 0, 0}
  end
  -- The TTL is the wait, as user_allow.lua answers it, even when a longer
  -- cooldown set it; a key without one gets the full cooldown there.
  local mine = true
-- include: lib/user_cooldown.lua
  if not mine then
    return {-1, 0, 0, 0, 0, 0, 0}
  end
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
local base = z[#z] + 0
local n = #z / 2 - 1

-- include: lib/clock.lua
local real = now
local newest = nil
if n > 0 then
  newest = base + z[2 * n]
  if newest > stamp then now = newest end
end
local skew = now - real

local cutoff = now - window
local expired = 0
while expired < n and base + z[2 * expired + 2] <= cutoff do
  expired = expired + 1
end
local count = n - expired
if count == 0 then
  return {1, 0, limit, 0, 0, 0, 0}
end

local oldest = nil
if count >= limit then
  oldest = base + z[2 * (expired + count - limit + 1)]
end
local reason, retry = 0, 0
-- include: lib/user_wait.lua
local remaining = limit - count
if remaining < 0 then remaining = 0 end
local reset = newest + window - now + skew
local cleft = 0
if cooldown > 0 and newest + cooldown > now then cleft = newest + cooldown - now + skew end
if reason > 0 then
  retry = retry + skew
  if skew > 0 then
-- include: lib/user_skew.lua
  end
end
return {1, reason, remaining, retry, reset, cleft, count}
