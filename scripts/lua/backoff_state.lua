-- backoff_state.lua: where an LLM endpoint stands, for inspection. Reads
-- only.
--
-- KEYS[1]  the endpoint's state hash (fields in backoff_check.lua)
-- ARGV[1]  probe lease in ms
--
-- Returns {state, opens, failures, delay_ms, retry_after_ms, probing}:
--   state           0 closed (no key), 1 half-open, 2 open
--   opens           open periods since the last success
--   failures        failures since the last success, stale ones included
--   delay_ms        nominal delay of the current (or last) open period
--   retry_after_ms  open: until half-open; half-open with a probe out: until
--                   its lease ends; else 0
--   probing         1 when half-open and a probe's lease is running
-- The clock is Redis TIME. After it stepped back, a wait is reported as at
-- most the delay (the lease); the next Check or Failure writes that
-- (backoff_check.lua).

local h = redis.call('HMGET', KEYS[1], 'o', 'd', 'u', 'p', 'f')
local u = tonumber(h[3])
if not u then
  return {0, 0, 0, 0, 0, 0}
end
-- include: lib/clock.lua
local opens, d, p, f = tonumber(h[1]) or 0, tonumber(h[2]) or 0, tonumber(h[4]) or 0, tonumber(h[5]) or 0
if now < u then
  return {2, opens, f, d, math.min(u - now, d), 0}
end
if p > now then
  return {1, opens, f, d, math.min(p - now, tonumber(ARGV[1])), 1}
end
return {1, opens, f, d, 0, 0}
