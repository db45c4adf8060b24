-- lib/user_decide_window.lua: one decision under the cooldown and the
-- sliding window, checked and applied atomically (a denial writes
-- nothing), for user_allow.lua and user_allow_one.lua; a snippet (see
-- lib/clock.lua). Reads key, limit, window, cooldown and oldest_rank
-- (-limit as a string, the rank of the entry that must age out first
-- when the window is full); sets a (1, 0, or -1: not Floodgate's key,
-- nothing written), reason, rem, retry and reset as user_allow.lua
-- returns them. The layout and why it reads so little are in
-- user_allow.lua's header. Ranks and zeroes go to Redis as strings, and
-- the integers computed here through string.format('%d'): Redis 7.0
-- formats a number argument with printf's %.17g, which callgrind puts at
-- ~840 instructions more than string.format's integer printf.
a, reason, rem, retry, reset = -1, 0, 0, 0, 0
do
  local fmt = string.format
-- include: lib/user_block.lua
  local exp = redis.call('PEXPIRETIME', key)
  local now, stamp, z, newest, base, exact
  if exp > 0 then
    -- The clock without TIME: PTTL is the expiry minus Redis's
    -- millisecond clock at the call, rounded down as TIME's is here.
    now = exp - redis.call('PTTL', key)
    newest = exp - window
    base = exp - exp % block
  elseif exp == -2 then
    -- No window key: carry over an older layout's, or start afresh.
-- include: lib/clock_read.lua
    local old, times, foreign
-- include: lib/user_old.lua
    if foreign then
      exp = -1
    elseif times then
-- include: lib/user_store.lua
      redis.call('DEL', old)
      newest = times[#times]
      z = {#times - 1, fmt('%d', newest - base)}
      exact = true
    else
      exp = stamp + window
      redis.call('ZADD', key, fmt('%d', stamp - (exp - exp % block)), '0')
      redis.call('PEXPIREAT', key, fmt('%d', exp))
      a, rem, reset = 1, limit - 1, window
    end
  end
  -- exp -1: a key without a TTL is not ours (each write sets one). Once
  -- round, or twice when the exact clock disagrees with the expiry's.
  while exp > 0 and a == -1 do
    if newest > now and not exact then
-- include: lib/user_exact.lua
    end
    -- When TIME went backwards the key's clock stays ahead by skew; every
    -- duration handed back (waits, TTL) is stretched by it, so none ends
    -- early in real time. (An entry up to the stamp is no skew: only the
    -- rounding up of a request earlier in this millisecond.)
    local skew = 0
    if exact and newest > stamp then skew = newest - now; now = newest end

    -- Entries scored at or before the cut have aged out. They are the
    -- oldest, so counting them walks only that prefix of the listpack
    -- (none, mostly): the cost does not grow with the window.
    local count = redis.pcall('ZCARD', key)
    if type(count) ~= 'number' then break end -- WRONGTYPE: not ours
    local expired = redis.call('ZCOUNT', key, '-inf', fmt('%d', now - window - base))
    count = count - expired

    -- Full: the oldest entry that still counts (limit entries back from
    -- the newest) must age out first.
    local oldest = nil
    if count >= limit then
      oldest = newest -- limit 1: the newest
      if limit > 1 then
        oldest = base + redis.call('ZRANGE', key, oldest_rank, oldest_rank, 'WITHSCORES')[2]
      end
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
    if not exact then
      -- Accepting: the stamp needs TIME, the next id the newest entry.
      -- Decide again if either disagrees with what the expiry said (a
      -- clock read before PTTL's, or the window setting changed).
      local pnow, pnewest = now, newest
-- include: lib/user_exact.lua
      if now < pnow or newest ~= pnewest then count = nil end
    end
    if count then
      -- Recorded at the stamp (on the key's clock when it is ahead).
      local at = stamp
      if newest > at then at = newest end
      a, rem, reset = 1, limit - count - 1, window + skew
      exp = at + window
      local nbase = exp - exp % block
      if count == 0 then
        -- Every entry has aged out: a fresh window from now.
        redis.call('DEL', key)
        redis.call('ZADD', key, fmt('%d', at - nbase), '0')
      else
        if expired > 0 then
          -- Drop what has aged out, so the ids held are the latest ones.
          redis.call('ZREMRANGEBYRANK', key, '0', fmt('%d', expired - 1))
        end
        local id = (z[1] + 1) % 128
        if nbase ~= base then
          -- The base moves with the expiry's block: rescore every entry
          -- (once a block); the new entry rides along in the same call.
          local e = redis.call('ZRANGE', key, '0', '-1', 'WITHSCORES')
          local args, held = {}, {}
          for i = 1, #e, 2 do
            args[#args + 1] = fmt('%d', e[i + 1] + base - nbase)
            args[#args + 1] = e[i]
            held[tonumber(e[i])] = true
          end
          if held[id] then
-- include: lib/user_next_id.lua
          end
          args[#args + 1] = fmt('%d', at - nbase)
          args[#args + 1] = id
          redis.call('ZADD', key, unpack(args))
        elseif redis.call('ZADD', key, 'NX', fmt('%d', at - base), fmt('%d', id)) == 0 then
          -- The id is held (see lib/user_next_id.lua): nothing was
          -- written; take the right one.
          local held = {}
          for _, v in ipairs(redis.call('ZRANGE', key, '0', '-1')) do held[tonumber(v)] = true end
-- include: lib/user_next_id.lua
          redis.call('ZADD', key, fmt('%d', at - base), id)
        end
      end
      redis.call('PEXPIREAT', key, fmt('%d', exp))
      break
    end
  end
end
