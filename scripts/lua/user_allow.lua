-- user_allow.lua: per-user decisions (cooldown + sliding-window log), each
-- checked and applied atomically; a denied request writes nothing. One key
-- is one request: Allow passes one, AllowMany and the coalescer pass many
-- (on a single node; on a Cluster each call stays within one slot).
--
-- KEYS[i]  a user's state key, floodgate:{u:<user>}:w or :cd. The same key
--          may appear twice: two requests, decided in order.
--          With a window (ARGV[1] > 0) it is a sorted set kept as a listpack:
--            member "b"      scored by the base time, ms since the Unix epoch;
--            members 0..126  one per accepted request, scored by its time in
--                            ms relative to the base (small integers, so the
--                            listpack stores each entry in ~7 bytes).
--          The newest entry doubles as the cooldown clock: no second key.
--          Without a window it is a plain string whose TTL is the cooldown.
-- ARGV[1]  limit: accepted requests per window, 0..127 (0: no window)
-- ARGV[2]  window length in ms
-- ARGV[3]  cooldown in ms (0: no cooldown)
--
-- Returns five integers per key, in KEYS order:
--   allowed         1 or 0; -1 when the key is not a Floodgate window
--                   (another program's key): nothing was written
--   reason          0 none, 1 cooldown, 2 window (the longer wait when both deny)
--   remaining       requests left in the window after this decision (-1: no window)
--   retry_after_ms  0 when allowed, else the wait after which it passes
--   reset_after_ms  until the user's state is gone (window empty, cooldown over)
-- The clock is Redis TIME, read once; per key it never goes backwards.

local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cooldown = tonumber(ARGV[3])
local out = {}

local function push(a, r, rem, retry, reset)
  local n = #out
  out[n + 1], out[n + 2], out[n + 3], out[n + 4], out[n + 5] = a, r, rem, retry, reset
end

-- Cooldown only: SET NX PX is the whole decision.
local function cooldown_only(key)
  if cooldown == 0 then
    return push(1, 0, -1, 0, 0)
  end
  if redis.call('SET', key, '1', 'NX', 'PX', cooldown) then
    return push(1, 0, -1, 0, cooldown)
  end
  local ttl = redis.call('PTTL', key)
  if ttl < 0 then
    -- Ours always has a TTL: a key without one belongs to someone else
    -- (or lost it by hand); repair only what is recognisably ours.
    -- pcall: GET on another type is an error reply, which is not '1'.
    if redis.pcall('GET', key) ~= '1' then
      return push(-1, 0, 0, 0, 0)
    end
    redis.call('PEXPIRE', key, cooldown)
    ttl = cooldown
  end
  return push(0, 1, -1, ttl, ttl)
end

local function windowed(key, now)
  local real = now
  -- One read gives everything: entries in score order, then the base last.
  -- pcall: a foreign key (WRONGTYPE) fails this request, not the others.
  local z = redis.pcall('ZRANGE', key, 0, -1, 'WITHSCORES')
  local n = 0
  local base = now
  if z.err then
    return push(-1, 0, 0, 0, 0)
  end
  if #z > 0 then
    if z[#z - 1] ~= 'b' then
      return push(-1, 0, 0, 0, 0)
    end
    base = tonumber(z[#z])
    n = #z / 2 - 1
  end

  local newest = nil
  if n > 0 then
    newest = base + tonumber(z[2 * n])
    if now < newest then now = newest end
  end
  -- When TIME went backwards the key's clock stays ahead by skew; every
  -- duration handed back (waits, TTL) is stretched by it, so none ends
  -- early in real time.
  local skew = now - real

  -- Entries at or before the cutoff have aged out; they form a prefix.
  local cutoff = now - window
  local expired = 0
  while expired < n and base + tonumber(z[2 * expired + 2]) <= cutoff do
    expired = expired + 1
  end
  local count = n - expired

  local cwait = 0
  if cooldown > 0 and newest then
    cwait = newest + cooldown - now
  end
  local wwait = 0
  if count >= limit then
    -- The (count - limit + 1)th live entry must age out first.
    local i = expired + count - limit + 1
    wwait = base + tonumber(z[2 * i]) + window - now
  end
  if cwait > 0 or wwait > 0 then
    local reason, retry = 1, cwait
    if wwait > cwait then reason, retry = 2, wwait end
    local remaining = limit - count
    if remaining < 0 then remaining = 0 end
    return push(0, reason, remaining, retry + skew, newest + window - now + skew)
  end

  if expired > 0 then
    redis.call('ZREMRANGEBYRANK', key, 0, expired - 1)
  end

  -- The smallest id no live entry holds: unique whatever the clock says.
  local used = {}
  for i = expired + 1, n do used[tonumber(z[2 * i - 1])] = true end
  local id = 0
  while used[id] do id = id + 1 end

  if count == 0 then
    -- A fresh window: base and first entry in one call.
    redis.call('ZADD', key, now, 'b', 0, id)
  elseif now - base > math.max(8388607, 2 * window) then
    -- Rebase so relative scores stay within 24 bits (4 bytes in a
    -- listpack); the new entry rides along in the same call.
    local nb = base + tonumber(z[2 * expired + 2])
    local args = {nb, 'b'}
    for i = expired + 1, n do
      args[#args + 1] = base + tonumber(z[2 * i]) - nb
      args[#args + 1] = z[2 * i - 1]
    end
    args[#args + 1] = now - nb
    args[#args + 1] = id
    redis.call('ZADD', key, unpack(args))
  else
    redis.call('ZADD', key, now - base, id)
  end
  redis.call('PEXPIRE', key, window + skew)
  return push(1, 0, limit - count - 1, 0, window + skew)
end

if limit == 0 then
  for _, key in ipairs(KEYS) do cooldown_only(key) end
  return out
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, key in ipairs(KEYS) do windowed(key, now) end
return out
