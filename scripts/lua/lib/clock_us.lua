-- lib/clock_us.lua: Redis TIME in microseconds since the Unix epoch (exact:
-- below 2^53), read once; a snippet (see lib/clock.lua). Sets now_us.
local now_us
do
  local t = redis.call('TIME')
  now_us = t[1] * 1000000 + t[2] -- arithmetic converts (see lib/clock.lua)
end
