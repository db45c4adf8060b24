-- user_import.lua: replace a user's state with the given accepted requests,
-- laid out exactly as user_allow.lua would have left it (for migrations
-- from an in-process limiter, and for loadgen's realistic state).
--
-- KEYS[1]  the user's state key (see user_allow.lua for both layouts)
-- ARGV[1]  limit (0: no window, KEYS[1] is the cooldown string)
-- ARGV[2]  window length in ms
-- ARGV[3]  cooldown in ms
-- ARGV[4..] accept times, ms since the Unix epoch, ascending, at most limit
--          of them (1 without a window), rounded up to the millisecond
--          (as user_allow.lua records them). Times after Redis TIME count
--          as now; times that have left the window are dropped.
--
-- Returns the number of requests the window (or cooldown) now holds.

local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local cooldown = tonumber(ARGV[3])

-- include: lib/clock.lua

redis.call('DEL', key)

if limit == 0 then
  if cooldown == 0 or #ARGV < 4 then return 0 end
  local newest = math.min(tonumber(ARGV[#ARGV]), stamp)
  local ttl = newest + cooldown - now
  if ttl <= 0 then return 0 end
  redis.call('SET', key, '1', 'PX', ttl)
  return 1
end

local times = {}
for i = 4, #ARGV do
  local ts = math.min(tonumber(ARGV[i]), stamp)
  if ts > now - window then times[#times + 1] = ts end
end
while #times > limit do table.remove(times, 1) end
if #times == 0 then return 0 end

local base = times[1]
local args = {base, 'b'}
for i, ts in ipairs(times) do
  args[#args + 1] = ts - base
  args[#args + 1] = i - 1
end
redis.call('ZADD', key, unpack(args))
redis.call('PEXPIRE', key, times[#times] + window - now)
return #times
