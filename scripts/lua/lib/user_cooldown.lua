-- lib/user_cooldown.lua: a cooldown-only key's wait, from its PTTL; a
-- snippet (see lib/clock.lua) for user_allow.lua and user_peek.lua. Reads
-- key, cooldown and ttl (the key's PTTL, which exists); sets ttl to the
-- wait in ms and mine to false when the key is not Floodgate's. Ours
-- always has a TTL: one without belongs to someone else unless its value
-- is '1' (ours, its TTL lost by hand: the full cooldown). pcall: GET on
-- another type is an error reply, not '1'. PTTL rounds down, 0 in the
-- key's last millisecond: a denial always carries a wait of at least 1 ms.
mine = true
if ttl == -1 then
  if redis.pcall('GET', key) ~= '1' then mine = false else ttl = cooldown end
elseif ttl < 1 then
  ttl = 1
end
