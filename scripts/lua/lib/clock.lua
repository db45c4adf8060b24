-- lib/clock.lua (included by every script that reads the clock): Redis
-- TIME, read once, as ms since the Unix epoch rounded down (now: a
-- deadline compared with it passes late, never early), the same rounded
-- up (a stamp: a time recorded with it ages out late, never early), and
-- µs since the epoch (exact, below 2^53).
local function time_ms()
  local t = redis.call('TIME')
  local s, us = tonumber(t[1]), tonumber(t[2])
  return s * 1000 + math.floor(us / 1000), s * 1000 + math.ceil(us / 1000), s * 1000000 + us
end
