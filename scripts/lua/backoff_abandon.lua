-- backoff_abandon.lua: the caller holding an endpoint's half-open probe
-- hands it back without a verdict (its request was cancelled, say), so the
-- next caller may probe at once instead of waiting out the lease.
--
-- KEYS[1]  the endpoint's state hash (fields in backoff_check.lua)
-- ARGV[1]  the token backoff_check.lua stored with the probe
--
-- Returns {1} when the probe that token names was out and is now free;
-- {0} when it names no probe (already reported, its lease taken over by
-- another caller, or the endpoint closed): then nothing is written.

-- HMGET and HSET only: the commands the documented ACL grants.
if redis.call('HMGET', KEYS[1], 't')[1] ~= ARGV[1] then
  return {0}
end
redis.call('HSET', KEYS[1], 'p', 0, 't', '')
return {1}
