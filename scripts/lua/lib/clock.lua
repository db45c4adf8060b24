-- lib/clock.lua: Redis TIME in whole milliseconds since the Unix epoch,
-- read once. Included at the top level where a script reads the clock; a
-- snippet, not a function, because Redis builds a script's functions
-- afresh on every call (~0.1 us each). Sets now, rounded down (a deadline
-- compared with it passes late, never early), and stamp, rounded up (a
-- time recorded with it ages out late, never early). A script that reads
-- the clock only on some paths declares them itself and includes
-- lib/clock_read.lua there.
local now, stamp
-- include: lib/clock_read.lua
