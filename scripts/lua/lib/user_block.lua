-- lib/user_block.lua: the block a window key's base is rounded to, from
-- window (ms): 2^23 ms (~2.3 h), doubled while shorter than two windows.
-- The base is the key's expiry rounded down to the block, so an entry's
-- score, its time minus the base, lies within (-2 windows, block -
-- window): inside 24-bit listpack integers for windows up to 2^22 ms
-- (~70 min), and the base moves (every entry rescored) at most once a
-- block. A snippet (see lib/clock.lua); sets block.
local block = 8388608
while block < 2 * window do block = block * 2 end
