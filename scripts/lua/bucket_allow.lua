-- bucket_allow.lua: one GCRA (generic cell rate algorithm) decision for an
-- external API's rate, checked and applied atomically; a denied request
-- writes nothing.
--
-- GCRA keeps one number per API, the theoretical arrival time (TAT): the
-- instant at which the bucket would be full again. A request of n tokens
-- passes when TAT + n*interval - burst*interval <= now, and then moves TAT
-- to max(TAT, now) + n*interval. Over any span W this admits at most
-- burst + floor(W / interval) tokens, whichever replica asks.
--
-- All arithmetic is on integer microseconds (exact in Lua's doubles below
-- 2^53 µs, i.e. until the year 2255); the caller bounds burst*interval.
--
-- KEYS[1]  the API's TAT key, floodgate:{api:<name>}:t, a string holding
--          the TAT in whole microseconds since the Unix epoch (Redis TIME).
-- ARGV[1]  emission interval in µs (1e6 / rate, rounded up), >= 1
-- ARGV[2]  burst, >= 1
-- ARGV[3]  n, tokens this request takes, 1..burst
--
-- Returns {allowed, remaining, retry_after_us, reset_after_us}:
--   allowed         1 or 0; -1 when the key holds a value Floodgate did not
--                   write (not a whole number of µs): nothing is written
--   remaining       whole tokens left after this decision
--   retry_after_us  0 when allowed, else the exact wait after which the same
--                   request passes if nobody else takes tokens meanwhile, at
--                   least 1 ms, and at most until the key expires (after a
--                   step back of Redis TIME, TAT - now overstates the wait)
--   reset_after_us  until the bucket is full again (TAT - now, at most until
--                   the key expires)
-- The key's TTL is reset_after rounded up to a millisecond: once TAT is in
-- the past, a missing key means the same (a full bucket).

local key = KEYS[1]
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local n = tonumber(ARGV[3])

-- include: lib/clock_us.lua
local now = now_us

local tat = now
local stored = redis.call('GET', key)
if stored then
  -- Ours is always a whole, non-negative number of µs below 2^53.
  local s = tonumber(stored)
  if not s or s ~= math.floor(s) or s < 0 or s >= 9007199254740992 then
    return {-1, 0, 0, 0}
  end
  if s > tat then tat = s end
end

local tolerance = burst * interval
local newtat = tat + n * interval
local allowat = newtat - tolerance
if allowat > now then
  local remaining = math.floor((now + tolerance - tat) / interval)
  if remaining < 0 then remaining = 0 end
  local retry, reset = allowat - now, tat - now
  -- After Redis TIME stepped back, TAT is further ahead than the key's
  -- TTL, which runs in real time; once the key is gone the bucket is full.
  local pttl = redis.call('PTTL', key)
  if pttl >= 0 then
    local gone = (pttl + 1) * 1000
    if retry > gone then retry = gone end
    if reset > gone then reset = gone end
  end
  if retry < 1000 then retry = 1000 end
  return {0, remaining, retry, reset}
end

local ttl = math.ceil((newtat - now) / 1000)
redis.call('SET', key, string.format('%d', newtat), 'PX', string.format('%d', ttl))
return {1, math.floor((now - allowat) / interval), 0, newtat - now}
