-- backoff_success.lua: a call to an LLM endpoint succeeded; the endpoint
-- closes on every replica and its delay starts again from the first.
--
-- KEYS[1]  the endpoint's state hash (fields in backoff_check.lua)
--
-- Returns {1} when the key was deleted, {0} when there was none (already
-- closed). A key of another type fails with WRONGTYPE (ErrForeignKey in
-- Go) and is left alone, as is a hash without our field u, which
-- backoff_check.lua also takes for a closed endpoint.

if redis.call('HMGET', KEYS[1], 'u')[1] then
  redis.call('DEL', KEYS[1])
  return {1}
end
return {0}
