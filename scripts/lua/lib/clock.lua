-- lib/clock.lua: Redis TIME in whole milliseconds since the Unix epoch,
-- read once. Included at the top level where a script reads the clock; a
-- snippet, not a function, because Redis builds a script's functions
-- afresh on every call (~0.1 us each). Sets now, rounded down (a deadline
-- compared with it passes late, never early), and stamp, rounded up (a
-- time recorded with it ages out late, never early).
local now, stamp
do
  local t = redis.call('TIME')
  local us = tonumber(t[2])
  local frac = us % 1000
  now = tonumber(t[1]) * 1000 + (us - frac) / 1000
  stamp = now
  if frac ~= 0 then stamp = now + 1 end
end
