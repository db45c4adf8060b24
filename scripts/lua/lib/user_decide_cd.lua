-- lib/user_decide_cd.lua: one cooldown-only decision (no window: the key
-- is a plain string whose TTL is the cooldown; SET NX PX is the whole
-- decision), for user_allow.lua and user_allow_one.lua; a snippet (see
-- lib/clock.lua). Reads key, cooldown and ARGV[3] (the cooldown as the
-- caller's string); sets a (1, 0, or -1: not Floodgate's key, nothing
-- written), reason, rem, retry and reset as user_allow.lua returns them.
do
  local ttl = 0
  a = 0
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
    reason, rem, retry, reset = 0, -1, 0, ttl
  elseif a == 0 then
    reason, rem, retry, reset = 1, -1, ttl, ttl
  else
    reason, rem, retry, reset = 0, 0, 0, 0
  end
end
