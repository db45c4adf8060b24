-- backoff_check.lua: may a caller use an LLM endpoint now? Looks at the
-- endpoints in the caller's order and answers for the first usable one, so
-- Backoff.Check (one key) and Backoff.Pick (several) are one round trip.
--
-- KEYS[1..n]  endpoint state hashes <prefix>{e:<backoff>}:<endpoint>, all of
--             one Backoff, so they share a hash tag and a Cluster slot. A
--             missing key is a closed endpoint. Fields, all integers:
--               o  opens: open periods since the last success (the level)
--               d  nominal delay of the current open period in ms (no jitter)
--               u  open until, ms since the Unix epoch
--               p  the half-open probe's lease ends, ms since the epoch (0: none)
--               t  the probe's token ("" or absent: none), so Abandon frees
--                  only it
--               f  failures reported since the last success (stale ones too)
-- ARGV[1]     probe lease in ms
-- ARGV[2]     keep in ms: how long a key outlives its last deadline
-- ARGV[3]     token for the probe, should this caller get it (drawn in Go)
-- ARGV[4]     MaxIdleTime in ms: a write sets the TTL to the deadline plus
--             keep, capped at this but never below the deadline itself
--
-- Returns {index, allowed, reason, remaining, retry_after_ms, reset_after_ms}:
--   index      1-based position of the endpoint answered for; 0 when none is
--              usable
--   allowed    1 when the endpoint is closed (remaining -1) or half-open with
--              no live probe, in which case this caller now holds the probe
--              (remaining 0, reset_after_ms = the lease)
--   reason     0 none; 4 backoff (open); 5 probing (another caller holds the
--              probe). When none is usable: the reason of the shortest wait.
--   retry_after_ms  0 when allowed; else the shortest wait among the
--              endpoints (until half-open, or until the probe's lease ends)
--   reset_after_ms  see allowed; equal to retry_after_ms when denied
-- Only handing out a probe writes (fields p, t and the TTL); denials write
-- nothing, except after Redis TIME stepped back (a failover to a server
-- whose clock is behind): a deadline further away than it can be (u more
-- than d ahead, p more than the lease) is pulled in to now + d (now +
-- lease) and the TTL renewed, so the endpoint stays open at most one delay
-- on the new clock, not for as long as the skew lasts.
-- The clock is Redis TIME.

local lease = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local idle = tonumber(ARGV[4])
-- include: lib/clock.lua
-- include: lib/backoff_ttl.lua

local best_reason, best_wait = 0, -1
for i, key in ipairs(KEYS) do
  local h = redis.call('HMGET', key, 'd', 'u', 'p')
  local d, u = tonumber(h[1]), tonumber(h[2])
  if not u then
    return {i, 1, 0, -1, 0, 0}
  end
  local reason, wait
  if now < u then
    if d and u - now > d then
      u = now + d
      redis.call('HSET', key, 'u', u)
      redis.call('PEXPIRE', key, ttl(d))
    end
    reason, wait = 4, u - now
  else
    local p = tonumber(h[3]) or 0
    if p - now > lease then
      p = now + lease
      redis.call('HSET', key, 'p', p)
      redis.call('PEXPIRE', key, ttl(lease))
    end
    if p > now then
      reason, wait = 5, p - now
    else
      -- Half-open and nobody probing (or the prober's lease ran out):
      -- this caller is the probe.
      redis.call('HSET', key, 'p', now + lease, 't', ARGV[3])
      redis.call('PEXPIRE', key, ttl(lease))
      return {i, 1, 0, 0, 0, lease}
    end
  end
  if best_wait < 0 or wait < best_wait then
    best_reason, best_wait = reason, wait
  end
end
return {0, 0, best_reason, 0, best_wait, best_wait}
