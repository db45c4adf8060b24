-- lib/clock_us.lua: Redis TIME in microseconds since the Unix epoch (exact:
-- below 2^53), read once; a snippet (see lib/clock.lua). Sets now_us.
local time = redis.call('TIME')
local now_us = tonumber(time[1]) * 1000000 + tonumber(time[2])
