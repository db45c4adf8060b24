-- lib/user_exact.lua: lib/user_decide_window.lua's exact clock: Redis
-- TIME (lib/clock_read.lua: now rounded down, stamp rounded up) and the
-- newest entry as the set holds it, z = {id, score}, newest = its time.
-- Read before a request is accepted, and when the key's expiry puts its
-- newest entry ahead of the clock (TIME stepped back, or the window
-- setting shrank since the last write). A snippet (see lib/clock.lua);
-- reads key and base, sets now, stamp, z, newest and exact; included
-- in a loop, which it leaves when the key is not a sorted set.
-- include: lib/clock_read.lua
z = redis.pcall('ZRANGE', key, '-1', '-1', 'WITHSCORES')
if z.err then break end -- WRONGTYPE: not ours
newest = base + z[2]
exact = true
