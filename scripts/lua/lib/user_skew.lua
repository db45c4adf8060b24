-- lib/user_skew.lua: after Redis TIME stepped back, a user's key clock
-- (its newest entry) is ahead of TIME and the waits computed on it are
-- stretched by the skew; the key's TTL may not have stretched with them
-- (it was set before the step), and once the key is gone the user starts
-- afresh, so no wait outlasts it. A snippet (see lib/clock.lua) for
-- user_allow.lua and user_peek.lua: reads key; caps retry, reset and
-- cleft (the cooldown left) at the key's PTTL, at least 1 ms.
do
  local ttl = redis.call('PTTL', key)
  if ttl >= 0 then
    if ttl < 1 then ttl = 1 end
    if retry > ttl then retry = ttl end
    if reset > ttl then reset = ttl end
    if cleft > ttl then cleft = ttl end
  end
end
