-- slots_release.lua: give a slot back, atomically.
--
-- KEYS[1]  holders: floodgate:{s:<pool>}:h, lease members scored by lease
--          expiry (ms since the Unix epoch, Redis TIME)
-- ARGV[1]  member: the lease's unique token followed by the holder's name
--
-- Returns {1} when the lease was held and is now released; {0} when it was
-- already lost (released before, or expired: an expired entry is removed
-- too). The token is unique to one grant, so releasing twice, or after the
-- slot was granted to someone else, frees nobody else's slot.
-- Removing an entry never needs a longer TTL, so the key's is left as is.

local holders = KEYS[1]
local member = ARGV[1]

-- include: lib/clock.lua

local score = redis.call('ZSCORE', holders, member)
if not score then return {0} end
redis.call('ZREM', holders, member)
if tonumber(score) <= now then return {0} end
return {1}
