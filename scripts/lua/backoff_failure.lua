-- backoff_failure.lua: a call to an LLM endpoint failed.
--
-- From closed, the endpoint opens for the first delay. From half-open (the
-- delay ran out: the probe, or anyone after the delay, failed) it opens
-- again for the next delay, multiplied and capped. While open, the failure
-- is stale (its request started before the endpoint opened, since nobody is
-- admitted while open): it is counted in f but neither extends the open
-- period nor grows the delay, so a burst of failing in-flight requests
-- escalates once, not once per request.
--
-- KEYS[1]  the endpoint's state hash (fields in backoff_check.lua)
-- ARGV[1]  first delay in ms (LLMRetryDelay)
-- ARGV[2]  multiplier in millionths (LLMBackoffMultiplier * 1e6)
-- ARGV[3]  delay cap in ms (LLMBackoffMax); also how long the key outlives
--          the open period, so the level survives a quiet half-open spell
-- ARGV[4]  jitter cut in millionths, 0..999999: the open period lasts
--          delay - floor(delay * cut / 1e6); the nominal delay, from which
--          the next one grows, stays unjittered
-- ARGV[5]  MaxIdleTime in ms: the TTL (open period + cap) is capped at
--          this, but never below the open period itself
--
-- Returns {escalated, retry_after_ms, opens, failures, delay_ms}:
--   escalated       1 when this failure opened the endpoint, 0 when stale
--   retry_after_ms  the wait now in force (the jittered delay when escalated)
--   opens           open periods since the last success
--   failures        failures since the last success, this one included
--   delay_ms        the nominal delay of the current open period
-- The clock is Redis TIME. After it stepped back (u more than d ahead), the
-- open period is pulled in to now + d, as backoff_check.lua does.

local key = KEYS[1]
local base = tonumber(ARGV[1])
local mult = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local cut = tonumber(ARGV[4])
local idle = tonumber(ARGV[5])
-- include: lib/clock.lua

-- floor(a / b) for non-negative integers below 2^53, exact even where the
-- double quotient rounds up to the next integer.
local function idiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end

local keep = cap -- the key outlives the open period by the cap
-- include: lib/backoff_ttl.lua

local h = redis.call('HMGET', key, 'o', 'd', 'u', 'f')
local opens, d, u = tonumber(h[1]), tonumber(h[2]), tonumber(h[3])
local failures = (tonumber(h[4]) or 0) + 1

if d and u and now < u then
  if u - now > d then
    u = now + d
    redis.call('HSET', key, 'u', u, 'f', failures)
    redis.call('PEXPIRE', key, ttl(d))
  else
    redis.call('HSET', key, 'f', failures)
  end
  return {0, u - now, opens or 1, failures, d}
end

local nd = base
if d then
  if d >= cap then nd = cap else nd = math.min(math.max(idiv(d * mult, 1000000), base), cap) end
end
local wait = nd - idiv(nd * cut, 1000000)
if wait < 1 then wait = 1 end
opens = (opens or 0) + 1
redis.call('HSET', key, 'o', opens, 'd', nd, 'u', now + wait, 'p', 0, 't', '', 'f', failures)
redis.call('PEXPIRE', key, ttl(wait))
return {1, wait, opens, failures, nd}
