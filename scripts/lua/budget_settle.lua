-- budget_settle.lua: replace a live reservation's estimate with what the
-- call really cost (Budget.Settle), or drop it (Budget.Cancel, units 0),
-- atomically. The entry keeps the time it was reserved at, so it ages out
-- when the reservation would have; the key's TTL already covers it.
--
-- KEYS[1]  the user's budget key, laid out as in budget_reserve.lua
-- ARGV[1]  the reservation's member: "<slot>.<units>.<nonce>" (the token)
-- ARGV[2]  lease in ms: the reservation may be settled until its time + lease
-- ARGV[3]  actual units, 0..2^31-1 (0: cancel, nothing counts); more than
--          the estimate is recorded in full, even past the limit
--
-- Returns {status}:
--    1  settled (or cancelled)
--    0  no such reservation: settled or cancelled already, aged out, or
--       never made on this key (another user's or budget's token)
--   -2  its lease has ended: it now counts as its estimate and stays so
--   -1  the key is not Floodgate's
-- Nothing is written unless the status is 1. The clock is Redis TIME,
-- held at the key's newest entry after a step back (as budget_reserve.lua).

local key = KEYS[1]
local token = ARGV[1]
local lease = tonumber(ARGV[2])
local actual = tonumber(ARGV[3])

local z = redis.pcall('ZRANGE', key, -2, -1, 'WITHSCORES')
if z.err then return {-1} end
if z[1] == nil then return {0} end
local base
if z[3] == nil then
  if z[1] ~= 'b' then return {-1} end
  return {0}
end
if z[3] ~= 'b' then return {-1} end
base = tonumber(z[4])
local score = redis.call('ZSCORE', key, token)
if not score then return {0} end
-- include: lib/clock.lua
local newest = base + tonumber(z[2])
if now < newest then now = newest end
if base + tonumber(score) + lease <= now then return {-2} end
redis.call('ZREM', key, token)
if actual > 0 then
  local slot = tonumber(string.match(token, '^(%d+)%.'))
  redis.call('ZADD', key, score, string.format('%d', actual * 128 + slot))
end
return {1}
