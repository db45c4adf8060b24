-- user_allow.lua: per-user decisions (cooldown + sliding-window log), each
-- checked and applied atomically; a denied request writes nothing. One key
-- is one request: Allow passes one, AllowMany and the coalescer pass many
-- (on a single node; on a Cluster each call stays within one slot).
--
-- KEYS[i]  a user's state key, floodgate:{u:<user>}:l or :cd. The same key
--          may appear twice: two requests, decided in order.
--          With a window (ARGV[1] > 0) it is floodgate:{u:<user>}:l, a
--          sorted set kept as a listpack, whose expiry is its clock:
--            members 0..127  one per accepted request, scored by its time in
--                            ms minus the base (small integers, so the
--                            listpack stores each entry in ~7 bytes). Ids
--                            are handed out in turn, modulo 128: the
--                            entries held are the latest ids, so the id
--                            after the newest one is free.
--          Every write sets the key's expiry (PEXPIREAT) to the newest
--          entry's time plus the window, exactly, so the newest entry's
--          time, the cooldown clock, is PEXPIRETIME minus the window (no
--          second key), and the base is the expiry rounded down to a block
--          (lib/user_block.lua; the entries are rescored on the rare write
--          that moves it). Nothing else is stored. A window key that is not
--          a sorted set, or has no expiry, is not Floodgate's. The layout
--          before this one (until issue 22: ...:w, its base in a member
--          "b") is carried over on the first decision that finds no ...:l
--          key (lib/user_old.lua).
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
-- The clock is Redis's: TIME, or a key's expiry minus its PTTL (the same
-- millisecond clock); per key it never goes backwards.
-- Times are whole milliseconds, rounded so that nothing is admitted early,
-- even by a fraction of one: an accepted request is recorded at TIME
-- rounded up and compared with TIME rounded down, so an entry ages out,
-- and a cooldown ends, up to 1 ms late, never early. Waits are rounded up
-- likewise (a request right after one in the same millisecond waits the
-- cooldown plus 1 ms). The key's expiry, the newest entry plus the window,
-- covers every entry: Redis expires a key only once its millisecond clock
-- is past the deadline, when the newest entry has aged out.
--
-- Why it reads so little: a decision's cost must not grow with the window,
-- and Redis 7.0 formats every score it hands to Lua with printf (~3,300
-- instructions each; reading the whole set would cost ~1 us per entry).
-- A denial reads no score at all unless the window is full: the expiry
-- (PEXPIRETIME), the clock as the expiry minus PTTL (Redis's millisecond
-- clock at the call, rounded down like TIME's), and the live count
-- (ZCOUNT above the cut: exact Remaining). Accepting reads TIME (the stamp
-- is rounded up) and the newest entry (the next id), and decides again if
-- either disagrees with the expiry's account.

local limit = ARGV[1] + 0
local window = ARGV[2] + 0
local cooldown = ARGV[3] + 0
local out = {}
local nout = 0

local oldest_rank = string.format('%d', -limit)
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
