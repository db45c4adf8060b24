-- lib/user_old.lua: reads the window a user's key held in the layout
-- before this one (Floodgate up to issue 22), so that no admission is
-- forgotten across an upgrade: key ...:w, a sorted set whose member "b"
-- (the highest score, so last) holds the base time and whose entries are
-- scored relative to it. For lib/user_decide_window.lua (which carries it
-- over into the new key and deletes it) and user_peek.lua, when the new
-- key does not exist. A snippet (see lib/clock.lua); reads key (the new
-- key, ...:l), limit, window and now; sets old (its name), times (the
-- entries still inside the window at now, ascending, at most limit; nil
-- when none) and foreign (the old key is not Floodgate's: not a sorted
-- set, or no "b" last). pcall: a foreign key fails this request alone.
old = string.sub(key, 1, -2) .. 'w'
do
  local oz = redis.pcall('ZRANGE', old, '0', '-1', 'WITHSCORES')
  if oz.err or (#oz > 0 and oz[#oz - 1] ~= 'b') then
    foreign = true
  elseif #oz > 0 then
    local obase = oz[#oz] + 0
    times = {}
    for i = 2, #oz - 2, 2 do
      local t = obase + oz[i]
      if t > now - window then times[#times + 1] = t end
    end
    while #times > limit do table.remove(times, 1) end
    if #times == 0 then times = nil end
  end
end
