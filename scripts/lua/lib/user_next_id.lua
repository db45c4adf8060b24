-- lib/user_next_id.lua: the id after the newest entry's, found the slow
-- way, for lib/user_decide_window.lua's rare paths: when several entries
-- share the newest score the set orders them as strings ("10" before
-- "9"), so the last is not always the newest; and a set written by an
-- older version of the script did not hand ids out in turn. A snippet (see
-- lib/clock.lua), not a function, so that the common path builds no
-- closure. Reads key, held (every id in the set) and z[2] (the newest
-- score as Redis printed it); sets id.
do
  local found = false
  for _, v in ipairs(redis.call('ZRANGEBYSCORE', key, z[2], z[2])) do
    local n = (tonumber(v) + 1) % 128
    if not held[n] then
      id, found = n, true
      break
    end
  end
  if not found then
    id = 0
    while held[id] do id = id + 1 end
  end
end
