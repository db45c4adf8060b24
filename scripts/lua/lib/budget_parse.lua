-- lib/budget_parse.lua: parse(m), a budget entry's member read as slot,
-- units and whether it is a reservation ("<slot>.<units>.<nonce>") rather
-- than a spend (units * 128 + slot); nil when m is not a Floodgate entry.
-- For budget_reserve.lua and budget_peek.lua. A function, unlike the other
-- lib files: both call it once per entry. (tonumber first: most entries
-- are spends, and a pattern match costs more than the arithmetic.)
local function parse(m)
  local v = tonumber(m)
  if v then
    if v < 0 or v % 1 ~= 0 then return nil end
    local s = v % 128
    return s, (v - s) / 128, false
  end
  local s, u = string.match(m, '^(%d+)%.(%d+)%.%x+$')
  if not s then return nil end
  return tonumber(s), tonumber(u), true
end
