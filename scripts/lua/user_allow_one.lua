-- user_allow_one.lua: one user's decision (cooldown + sliding-window log),
-- checked and applied atomically; a denied request writes nothing. The
-- same decision as user_allow.lua, from the same lib files, for the lone
-- call (Allow with no other call in flight): one key, no loop, no reply
-- table to grow, and every argument Redis needs as a string, so that a
-- decision runs as few Lua instructions as it can.
--
-- KEYS[1]  the user's state key, laid out as in user_allow.lua
-- ARGV[1]  limit: accepted requests per window, 0..127 (0: no window)
-- ARGV[2]  window length in ms
-- ARGV[3]  cooldown in ms (0: no cooldown)
-- ARGV[4]  -limit - 1 (the rank of the entry that must age out first when
--          the window is full), so the script formats no number for it
--
-- Returns five integers, as user_allow.lua does for one key: allowed (1, 0,
-- or -1 when the key is not Floodgate's: nothing was written), reason,
-- remaining, retry_after_ms, reset_after_ms.

local key = KEYS[1]
local limit = ARGV[1] + 0
local window = ARGV[2] + 0
local cooldown = ARGV[3] + 0
local a, reason, rem, retry, reset

if limit == 0 then
-- include: lib/user_decide_cd.lua
  return {a, reason, rem, retry, reset}
end

-- include: lib/clock.lua
local clock = now
local oldest_rank = ARGV[4]
-- include: lib/user_decide_window.lua
return {a, reason, rem, retry, reset}
