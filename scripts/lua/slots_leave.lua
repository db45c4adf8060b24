-- slots_leave.lua: an Acquire gave up (its context ended): take its member
-- out of the queue, so the waiters behind it need not wait for its
-- heartbeat to lapse, and out of the holders, in case a poll granted it a
-- slot whose reply never reached the caller.
--
-- KEYS[1]  holders: floodgate:{s:<pool>}:h, members scored by lease expiry
-- KEYS[2]  waiters: floodgate:{s:<pool>}:w, members scored by arrival (µs)
-- KEYS[3]  waiter liveness: floodgate:{s:<pool>}:e, members scored by
--          heartbeat expiry (ms)
-- ARGV[1]  member: the waiter's unique token followed by the holder's name
--
-- Returns {queued, held}: 1 for each set the member was removed from.
-- Removing entries needs no TTL change.

local held = redis.call('ZREM', KEYS[1], ARGV[1])
local queued = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return {queued, held}
