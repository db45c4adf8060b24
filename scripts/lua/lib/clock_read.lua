-- lib/clock_read.lua: reads Redis TIME into now and stamp, declared by
-- the includer, as lib/clock.lua describes them.
--
-- Numbers Redis hands over as strings (TIME, scores, ARGV) are converted
-- by arithmetic (s + 0), not tonumber: Lua 5.1's tonumber parses the
-- string twice (lua_isnumber, then lua_tonumber: two strtod calls), its
-- arithmetic once, and skips the global lookup and the call. Callgrind on
-- redis-server 7.0.15 (BenchmarkPeersInstructions): ~950 instructions per
-- number, 6,700 of user_allow_one.lua's 61,400 on a cooldown denial. Only
-- for strings that are numbers: arithmetic on anything else is an error.
do
  local t = redis.call('TIME')
  local us = t[2] + 0
  local frac = us % 1000
  now = t[1] * 1000 + (us - frac) / 1000
  stamp = now
  if frac ~= 0 then stamp = now + 1 end
end
