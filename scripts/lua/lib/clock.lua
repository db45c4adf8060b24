-- lib/clock.lua: Redis TIME in whole milliseconds since the Unix epoch,
-- read once. Included at the top level where a script reads the clock; a
-- snippet, not a function, because Redis builds a script's functions
-- afresh on every call (~0.1 us each). Sets now, rounded down (a deadline
-- compared with it passes late, never early), and stamp, rounded up (a
-- time recorded with it ages out late, never early).
--
-- Numbers Redis hands over as strings (TIME, scores, ARGV) are converted
-- by arithmetic (s + 0), not tonumber: Lua 5.1's tonumber parses the
-- string twice (lua_isnumber, then lua_tonumber: two strtod calls), its
-- arithmetic once, and skips the global lookup and the call. Callgrind on
-- redis-server 7.0.15 (BenchmarkPeersInstructions): ~950 instructions per
-- number, 6,700 of user_allow_one.lua's 61,400 on a cooldown denial. Only
-- for strings that are numbers: arithmetic on anything else is an error.
local now, stamp
do
  local t = redis.call('TIME')
  local us = t[2] + 0
  local frac = us % 1000
  now = t[1] * 1000 + (us - frac) / 1000
  stamp = now
  if frac ~= 0 then stamp = now + 1 end
end
