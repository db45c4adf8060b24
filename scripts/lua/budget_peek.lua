-- budget_peek.lua: what a user's Budget holds right now, without changing
-- anything (Budget.Peek), so an operator may look as often as they like.
--
-- KEYS[1]  the user's budget key, laid out as in budget_reserve.lua
-- ARGV[1]  window in ms
-- ARGV[2]  lease in ms
--
-- Returns {ok, spent, reserved, reservations, oldest_ms, reset_ms}:
--   ok            1; -1 when the key is not Floodgate's (the rest are 0)
--   spent         units of settled spends and of reservations whose lease
--                 ended, in the window
--   reserved      units of live reservations (their estimates)
--   reservations  how many live reservations
--   oldest_ms     until the oldest entry ages out, freeing its units (0:
--                 nothing held)
--   reset_ms      until the window holds nothing (0: nothing held)
-- The clock is Redis TIME with budget_reserve.lua's rule after a step back:
-- the key's clock stays at its newest entry, waits stretch by the step but
-- none outlasts the key's TTL.

local key = KEYS[1]
local window = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])

local z = redis.pcall('ZRANGE', key, 0, -1, 'WITHSCORES')
if z.err then return {-1, 0, 0, 0, 0, 0} end
local n = #z / 2 - 1
if n < 0 then return {1, 0, 0, 0, 0, 0} end
if z[#z - 1] ~= 'b' then return {-1, 0, 0, 0, 0, 0} end
if n == 0 then return {1, 0, 0, 0, 0, 0} end
local base = tonumber(z[#z])
-- include: lib/clock.lua
-- include: lib/budget_parse.lua
local newest = base + tonumber(z[2 * n])
local skew = 0
if now < newest then skew = newest - now; now = newest end
-- include: lib/budget_capped.lua

local spent, reserved, count, oldest = 0, 0, 0, nil
for i = 1, n do
  local at = base + tonumber(z[2 * i])
  local s, u, r = parse(z[2 * i - 1])
  if not s then return {-1, 0, 0, 0, 0, 0} end
  if at > now - window then
    if not oldest then oldest = at end
    if r and at + lease > now then
      reserved, count = reserved + u, count + 1
    else
      spent = spent + u
    end
  end
end
if not oldest then return {1, 0, 0, 0, 0, 0} end
-- (capped's 1 ms floor changes nothing here: the oldest entry is inside
-- the window.)
return {1, spent, reserved, count, capped(oldest + window - now), capped(newest + window - now)}
