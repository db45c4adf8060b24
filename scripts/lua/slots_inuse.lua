-- slots_inuse.lua: how many slots of a pool are held and how many callers
-- wait, counting only live entries (read-only: pruning is left to
-- slots_acquire.lua).
--
-- KEYS[1]  holders: floodgate:{s:<pool>}:h, lease members scored by lease
--          expiry (ms since the Unix epoch, Redis TIME)
-- KEYS[2]  waiter liveness: floodgate:{s:<pool>}:e, waiters scored by
--          heartbeat expiry (ms)
--
-- Returns {held, waiting}.

-- include: lib/clock.lua
local after = '(' .. string.format('%d', now)
return {redis.call('ZCOUNT', KEYS[1], after, '+inf'), redis.call('ZCOUNT', KEYS[2], after, '+inf')}
