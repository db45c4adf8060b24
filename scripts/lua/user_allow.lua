-- user_allow.lua: per-user decisions (cooldown + sliding-window log), each
-- checked and applied atomically; a denied request writes nothing. One key
-- is one request: Allow passes one, AllowMany and the coalescer pass many
-- (on a single node; on a Cluster each call stays within one slot).
--
-- KEYS[i]  a user's state key, floodgate:{u:<user>}:w or :cd. The same key
--          may appear twice: two requests, decided in order.
--          With a window (ARGV[1] > 0) it is a sorted set kept as a listpack:
--            member "b"      scored by the base time, ms since the Unix epoch
--                            (the highest score, so always last);
--            members 0..127  one per accepted request, scored by its time in
--                            ms relative to the base (small integers, so the
--                            listpack stores each entry in ~7 bytes), at or
--                            after the base. Ids are handed out in turn,
--                            modulo 128: the entries held are the latest
--                            ids, so the id after the newest one is free.
--          The newest entry doubles as the cooldown clock: no second key.
--          Without a window it is a plain string whose TTL is the cooldown.
-- ARGV[1]  limit: accepted requests per window, 0..127 (0: no window)
-- ARGV[2]  window length in ms
-- ARGV[3]  cooldown in ms (0: no cooldown)
--
-- Returns five integers per key, in KEYS order:
--   allowed         1 or 0; -1 when the key is not Floodgate's (another
--                   program's key, window or cooldown): nothing was written
--   reason          0 none, 1 cooldown, 2 window (the longer wait when both deny)
--   remaining       requests left in the window after this decision (-1: no window)
--   retry_after_ms  0 when allowed, else the wait after which it passes (>= 1)
--   reset_after_ms  until the user's state is gone (window empty, cooldown over)
-- The clock is Redis TIME, read once; per key it never goes backwards.
-- Times are whole milliseconds, rounded so that nothing is admitted early,
-- even by a fraction of one: an accepted request is recorded at TIME
-- rounded up and compared with TIME rounded down, so an entry ages out,
-- and a cooldown ends, up to 1 ms late, never early. Waits are rounded up
-- likewise (a request right after one in the same millisecond waits the
-- cooldown plus 1 ms). The key's TTL, the window from the last write,
-- covers the newest entry's too: Redis expires a key only once its
-- millisecond clock is past the deadline, at the stamp plus the window.
--
-- Why it reads so little: a decision's cost must not grow with the window.
-- It reads the newest entry and the base (one ranked read from the end),
-- counts entries with ZCARD (and, once the base is older than the window,
-- the aged-out ones with ZCOUNT), and reads one more entry only when the
-- window is full. Redis 7.0 formats every score it hands to Lua with printf, so
-- reading the whole set would cost ~1 µs per entry.

local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cooldown = tonumber(ARGV[3])
local out = {}
local nout = 0

if limit == 0 then
  -- Cooldown only: SET NX PX is the whole decision.
  for _, key in ipairs(KEYS) do
    local a, ttl = 0, 0
    if cooldown == 0 then
      a = 1
    elseif redis.call('SET', key, '1', 'NX', 'PX', ARGV[3]) then
      a, ttl = 1, cooldown
    else
      ttl = redis.call('PTTL', key)
      if ttl == -2 then
        -- Gone since the SET (a server whose scripts do not freeze the
        -- clock): the cooldown is over, so this request may pass.
        if redis.call('SET', key, '1', 'NX', 'PX', ARGV[3]) then
          a, ttl = 1, cooldown
        else
          ttl = redis.call('PTTL', key)
        end
      end
      if a == 0 then
        local lost, mine = ttl == -1, true
-- include: lib/user_cooldown.lua
        if not mine then
          a = -1
        elseif lost then
          -- Ours without a TTL (lost by hand): repair it.
          redis.call('PEXPIRE', key, ARGV[3])
        end
      end
    end
    if a == 1 then
      out[nout + 1], out[nout + 2], out[nout + 3], out[nout + 4], out[nout + 5] = 1, 0, -1, 0, ttl
    elseif a == 0 then
      out[nout + 1], out[nout + 2], out[nout + 3], out[nout + 4], out[nout + 5] = 0, 1, -1, ttl, ttl
    else
      out[nout + 1], out[nout + 2], out[nout + 3], out[nout + 4], out[nout + 5] = -1, 0, 0, 0, 0
    end
    nout = nout + 5
  end
  return out
end

-- next_id is the id after the newest entry's, found the slow way: when
-- several entries share the newest score the set orders them as strings
-- ("10" before "9"), so the last is not always the newest; and a set
-- written by an older version of this script did not hand ids out in
-- turn. held: every id in the set; newest_score: the newest score as
-- Redis printed it.
local function next_id(key, held, newest_score)
  for _, v in ipairs(redis.call('ZRANGEBYSCORE', key, newest_score, newest_score)) do
    local id = (tonumber(v) + 1) % 128
    if not held[id] then return id end
  end
  local id = 0
  while held[id] do id = id + 1 end
  return id
end

-- include: lib/clock.lua
local clock = now
for _, key in ipairs(KEYS) do
  local a, reason, rem, retry, reset = -1, 0, 0, 0, 0
  repeat -- once; break ends this key's decision
    -- The newest entry and the base: {id, score, 'b', base}.
    -- pcall: a foreign key (WRONGTYPE) fails this request, not the others.
    local z = redis.pcall('ZRANGE', key, -2, -1, 'WITHSCORES')
    if z.err then break end
    local now = clock
    if z[4] == nil then
      if z[1] ~= nil and z[1] ~= 'b' then break end
      -- Nothing held: a fresh window.
      redis.call('ZADD', key, stamp, 'b', 0, 0)
      redis.call('PEXPIRE', key, ARGV[2])
      a, rem, reset = 1, limit - 1, window
      break
    end
    if z[3] ~= 'b' then break end
    local base = tonumber(z[4])
    local newest_rel = tonumber(z[2])
    local newest = base + newest_rel
    -- When TIME went backwards the key's clock stays ahead by skew; every
    -- duration handed back (waits, TTL) is stretched by it, so none ends
    -- early in real time. (An entry up to the stamp is no skew: only the
    -- rounding up of a request earlier in this millisecond.)
    local skew = 0
    if newest > stamp then skew = newest - now; now = newest end

    -- Entries scored at or before cut have aged out; none can have while
    -- the base is inside the window (cut < 0). They are the oldest, so
    -- counting them walks only that prefix of the listpack.
    local cut = now - window - base
    local count = redis.call('ZCARD', key) - 1 -- all but the base
    local expired = 0
    if cut >= 0 then
      if newest_rel <= cut then
        expired = count
      else
        expired = redis.call('ZCOUNT', key, '-inf', cut)
      end
      count = count - expired
    end

    -- Full: the oldest entry that still counts (limit entries back from
    -- the newest) must age out first.
    local oldest = nil
    if count >= limit then
      oldest = newest_rel -- limit 1: the newest, already read
      if limit > 1 then
        oldest = tonumber(redis.call('ZRANGE', key, -limit - 1, -limit - 1, 'WITHSCORES')[2])
      end
      oldest = base + oldest
    end
-- include: lib/user_wait.lua
    if reason > 0 then
      a = 0
      rem = limit - count
      if rem < 0 then rem = 0 end
      retry = retry + skew
      reset = newest + window - now + skew
      if skew > 0 then
        local cleft = 0 -- Peek's; capped alongside
-- include: lib/user_skew.lua
      end
      break
    end

    -- Recorded at the stamp (on the key's clock when it is ahead).
    local at = stamp
    if now > at then at = now end
    a, rem, reset = 1, limit - count - 1, window + skew
    local id = (tonumber(z[1]) + 1) % 128
    local rel = at - base
    if count == 0 then
      -- Every entry has aged out: a fresh window from now.
      redis.call('ZREMRANGEBYRANK', key, 0, -2)
      redis.call('ZADD', key, at, 'b', 0, id)
    else
      if expired > 0 then
        -- Drop what has aged out, so the ids held are the latest ones.
        redis.call('ZREMRANGEBYRANK', key, 0, expired - 1)
      end
      if rel > 8388607 and rel > 2 * window then
        -- Rebase so relative scores stay within 24 bits (4 bytes in a
        -- listpack); the new entry rides along in the same call.
        local e = redis.call('ZRANGE', key, 0, -2, 'WITHSCORES')
        local nb = base + tonumber(e[2])
        local args = {nb, 'b'}
        local held = {}
        for i = 1, #e, 2 do
          args[#args + 1] = tonumber(e[i + 1]) + base - nb
          args[#args + 1] = e[i]
          held[tonumber(e[i])] = true
        end
        if held[id] then id = next_id(key, held, z[2]) end
        args[#args + 1] = at - nb
        args[#args + 1] = id
        redis.call('ZADD', key, unpack(args))
      elseif redis.call('ZADD', key, 'NX', rel, id) == 0 then
        -- The id is held (see next_id): nothing was written; take the right one.
        local held = {}
        for _, v in ipairs(redis.call('ZRANGE', key, 0, -2)) do held[tonumber(v)] = true end
        redis.call('ZADD', key, rel, next_id(key, held, z[2]))
      end
    end
    if skew == 0 then
      redis.call('PEXPIRE', key, ARGV[2])
    else
      redis.call('PEXPIRE', key, reset)
    end
  until true
  out[nout + 1], out[nout + 2], out[nout + 3], out[nout + 4], out[nout + 5] = a, reason, rem, retry, reset
  nout = nout + 5
end
return out
