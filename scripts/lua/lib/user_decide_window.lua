-- lib/user_decide_window.lua: one decision under the cooldown and the
-- sliding window, checked and applied atomically (a denial writes
-- nothing), for user_allow.lua and user_allow_one.lua; a snippet (see
-- lib/clock.lua). Reads key, limit, window, cooldown, ARGV[2] (the window
-- as the caller's string), clock and stamp (lib/clock.lua's now and
-- stamp) and oldest_rank (-limit - 1, the rank of the entry that must age
-- out first when the window is full); sets a (1, 0, or -1: not
-- Floodgate's key, nothing written), reason, rem, retry and reset as
-- user_allow.lua returns them. The layout and why it reads so little are
-- in user_allow.lua's header. Ranks and zeroes go to Redis as strings,
-- and the integers computed here through string.format('%d'): Redis 7.0
-- formats a number argument with printf's %.17g, which callgrind puts at
-- ~840 instructions more than string.format's integer printf (an allowed
-- decision sends two: 81,200 -> 80,200 instructions in all).
a, reason, rem, retry, reset = -1, 0, 0, 0, 0
repeat -- once; break ends the decision
  -- The newest entry and the base: {id, score, 'b', base}.
  -- pcall: a foreign key (WRONGTYPE) fails this request, not the others.
  local z = redis.pcall('ZRANGE', key, '-2', '-1', 'WITHSCORES')
  if z.err then break end
  local now = clock
  if z[4] == nil then
    if z[1] ~= nil and z[1] ~= 'b' then break end
    -- Nothing held: a fresh window.
    redis.call('ZADD', key, string.format('%d', stamp), 'b', '0', '0')
    redis.call('PEXPIRE', key, ARGV[2])
    a, rem, reset = 1, limit - 1, window
    break
  end
  if z[3] ~= 'b' then break end
  local base = z[4] + 0
  local newest_rel = z[2] + 0
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
      expired = redis.call('ZCOUNT', key, '-inf', string.format('%d', cut))
    end
    count = count - expired
  end

  -- Full: the oldest entry that still counts (limit entries back from
  -- the newest) must age out first.
  local oldest = nil
  if count >= limit then
    oldest = newest_rel -- limit 1: the newest, already read
    if limit > 1 then
      oldest = redis.call('ZRANGE', key, oldest_rank, oldest_rank, 'WITHSCORES')[2] + 0
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
  local id = (z[1] + 1) % 128
  local rel = at - base
  local fmt = string.format
  if count == 0 then
    -- Every entry has aged out: a fresh window from now.
    redis.call('ZREMRANGEBYRANK', key, '0', '-2')
    redis.call('ZADD', key, fmt('%d', at), 'b', '0', fmt('%d', id))
  else
    if expired > 0 then
      -- Drop what has aged out, so the ids held are the latest ones.
      redis.call('ZREMRANGEBYRANK', key, '0', fmt('%d', expired - 1))
    end
    if rel > 8388607 and rel > 2 * window then
      -- Rebase so relative scores stay within 24 bits (4 bytes in a
      -- listpack); the new entry rides along in the same call.
      local e = redis.call('ZRANGE', key, '0', '-2', 'WITHSCORES')
      local nb = base + tonumber(e[2])
      local args = {nb, 'b'}
      local held = {}
      for i = 1, #e, 2 do
        args[#args + 1] = tonumber(e[i + 1]) + base - nb
        args[#args + 1] = e[i]
        held[tonumber(e[i])] = true
      end
      if held[id] then
-- include: lib/user_next_id.lua
      end
      args[#args + 1] = at - nb
      args[#args + 1] = id
      redis.call('ZADD', key, unpack(args))
    elseif redis.call('ZADD', key, 'NX', fmt('%d', rel), fmt('%d', id)) == 0 then
      -- The id is held (see lib/user_next_id.lua): nothing was written;
      -- take the right one.
      local held = {}
      for _, v in ipairs(redis.call('ZRANGE', key, '0', '-2')) do held[tonumber(v)] = true end
-- include: lib/user_next_id.lua
      redis.call('ZADD', key, rel, id)
    end
  end
  if skew == 0 then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    redis.call('PEXPIRE', key, reset)
  end
until true
