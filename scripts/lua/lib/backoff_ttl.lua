-- lib/backoff_ttl.lua: ttl(dl), the TTL a write gives an endpoint's key
-- whose next deadline is dl ms away: the deadline plus keep (how long the
-- key outlives it), capped at idle (MaxIdleTime) but never below the
-- deadline itself. For backoff_check.lua and backoff_failure.lua; reads
-- keep and idle.
local function ttl(dl)
  return math.max(dl, math.min(dl + keep, idle))
end
