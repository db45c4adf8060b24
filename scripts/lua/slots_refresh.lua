-- slots_refresh.lua: extend a held slot's lease, atomically.
--
-- KEYS[1]  holders: floodgate:{s:<pool>}:h, lease members scored by lease
--          expiry (ms since the Unix epoch, Redis TIME)
-- ARGV[1]  member: the lease's unique token followed by the holder's name
-- ARGV[2]  lease in ms: the new expiry is now + lease
--
-- Returns {1} when extended; {0} when the lease is lost: released, pruned
-- after expiring, or expired (then it is removed). The token is unique to
-- one grant, so a lost lease can never extend someone else's slot.
-- The key's TTL is the time until its last lease expires.

local holders = KEYS[1]
local member = ARGV[1]
local lease = tonumber(ARGV[2])

-- include: lib/clock.lua

local score = redis.call('ZSCORE', holders, member)
if not score then return {0} end
if tonumber(score) <= now then
  redis.call('ZREM', holders, member)
  return {0}
end
redis.call('ZADD', holders, 'XX', string.format('%d', now + lease), member)
local last = redis.call('ZRANGE', holders, -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', holders, string.format('%d', tonumber(last[2]) - now))
return {1}
