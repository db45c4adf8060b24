-- user_allow.lua: per-user decisions (cooldown + sliding-window log), each
-- checked and applied atomically; a denied request writes nothing. One key
-- is one request: Allow passes one, AllowMany and the coalescer pass many
-- (on a single node; on a Cluster each call stays within one slot).
--
-- KEYS[i]  a user's state key, floodgate:{u:<user>}:w or :cd. The same key
--          may appear twice: two requests, decided in order.
--          With a window (ARGV[1] > 0) it is a sorted set kept as a listpack:
--            member "b"      scored by the base time, ms since the Unix epoch
--                            (the highest score, so always last);
--            members 0..127  one per accepted request, scored by its time in
--                            ms relative to the base (small integers, so the
--                            listpack stores each entry in ~7 bytes), at or
--                            after the base. Ids are handed out in turn,
--                            modulo 128: the entries held are the latest
--                            ids, so the id after the newest one is free.
--          The newest entry doubles as the cooldown clock: no second key.
--          Without a window it is a plain string whose TTL is the cooldown.
-- ARGV[1]  limit: accepted requests per window, 0..127 (0: no window)
-- ARGV[2]  window length in ms
-- ARGV[3]  cooldown in ms (0: no cooldown)
--
-- (user_allow_one.lua decides one key with the same logic, from the same
-- lib files: lib/user_decide_window.lua and lib/user_decide_cd.lua.)
--
-- Returns five integers per key, in KEYS order:
--   allowed         1 or 0; -1 when the key is not Floodgate's (another
--                   program's key, window or cooldown): nothing was written
--   reason          0 none, 1 cooldown, 2 window (the longer wait when both deny)
--   remaining       requests left in the window after this decision (-1: no window)
--   retry_after_ms  0 when allowed, else the wait after which it passes (>= 1)
--   reset_after_ms  until the user's state is gone (window empty, cooldown over)
-- The clock is Redis TIME, read once; per key it never goes backwards.
-- Times are whole milliseconds, rounded so that nothing is admitted early,
-- even by a fraction of one: an accepted request is recorded at TIME
-- rounded up and compared with TIME rounded down, so an entry ages out,
-- and a cooldown ends, up to 1 ms late, never early. Waits are rounded up
-- likewise (a request right after one in the same millisecond waits the
-- cooldown plus 1 ms). The key's TTL, the window from the last write,
-- covers the newest entry's too: Redis expires a key only once its
-- millisecond clock is past the deadline, at the stamp plus the window.
--
-- Why it reads so little: a decision's cost must not grow with the window.
-- It reads the newest entry and the base (one ranked read from the end),
-- counts entries with ZCARD (and, once the base is older than the window,
-- the aged-out ones with ZCOUNT), and reads one more entry only when the
-- window is full. Redis 7.0 formats every score it hands to Lua with printf, so
-- reading the whole set would cost ~1 µs per entry.

local limit = ARGV[1] + 0
local window = ARGV[2] + 0
local cooldown = ARGV[3] + 0
local out = {}
local nout = 0

-- The clock only with a window: a cooldown-only decision is SET NX PX.
local now, stamp
if limit > 0 then
-- include: lib/clock_read.lua
end
local clock = now
local oldest_rank = -limit - 1
for _, key in ipairs(KEYS) do
  local a, reason, rem, retry, reset
  if limit == 0 then
-- include: lib/user_decide_cd.lua
  else
-- include: lib/user_decide_window.lua
  end
  out[nout + 1], out[nout + 2], out[nout + 3], out[nout + 4], out[nout + 5] = a, reason, rem, retry, reset
  nout = nout + 5
end
return out
