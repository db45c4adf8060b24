-- budget_reserve.lua: may a user spend `units` of a Budget now? Checked and
-- applied atomically; a denial writes nothing. Budget.Reserve passes a
-- nonce and gets a reservation (settled later by budget_settle.lua);
-- Budget.Charge passes none and records a spend at once. Both admit by the
-- same rule, so it lives in one script.
--
-- KEYS[1]  the user's budget key, floodgate:{u:<user>}:b:<budget>, a sorted
--          set kept as a listpack (at most 128 entries):
--            member "b"        scored by the base time, ms since the Unix
--                              epoch (the highest score, so always last);
--            member <int>      a spend: units*128 + slot (slot 0..127,
--                              unique among the entries), scored by its
--                              time in ms relative to the base;
--            member "<slot>.<units>.<nonce>"  a reservation of units (the
--                              estimate), scored by the time it was made,
--                              relative to the base. It is live (may be
--                              settled or cancelled) for one lease; after
--                              that it is a spend of its estimate.
--          Every entry counts for one window from its time: a reservation
--          counts as its estimate from the moment it is made, so a crashed
--          caller's reservation keeps counting.
-- ARGV[1]  limit: units per window, 1..2^31-1
-- ARGV[2]  window in ms
-- ARGV[3]  lease in ms (<= window)
-- ARGV[4]  units to reserve or charge, 1..limit
-- ARGV[5]  nonce: 16 hex digits for a reservation; "" to charge
--
-- Returns {allowed, remaining, retry_after_ms, reset_after_ms, slot}:
--   allowed         1 or 0; -1 when the key is not Floodgate's (another
--                   program's key or member): nothing was written
--   remaining       units left in the window after this decision (>= 0)
--   retry_after_ms  0 when allowed; else when enough of the window has aged
--                   out for these units, if nothing else happens (>= 1)
--   reset_after_ms  until the window holds nothing
--   slot            the new entry's slot when allowed (the token is
--                   "<slot>.<units>.<nonce>")
-- Past 127 entries (the listpack's bound, one is the base) the two oldest
-- entries that are not live reservations are merged into one, at the later
-- one's time: the merged units then count until that later time ages out,
-- longer than before, never shorter. When no two can merge (126 or more
-- live reservations) the request is denied until enough leases end.
-- The clock is Redis TIME; when it steps back the key's clock stays at its
-- newest entry, and waits stretch by the step, but none outlasts the key's
-- TTL (as in user_allow.lua). Entries are recorded at TIME rounded up and
-- compared with TIME rounded down (lib/clock.lua), so a spend ages out late,
-- never early.

local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local units = tonumber(ARGV[4])
local nonce = ARGV[5]

-- include: lib/clock.lua

local function member(slot)
  if nonce == '' then return string.format('%d', units * 128 + slot) end
  return slot .. '.' .. units .. '.' .. nonce
end

-- include: lib/budget_parse.lua

local z = redis.pcall('ZRANGE', key, -2, -1, 'WITHSCORES')
if z.err then return {-1, 0, 0, 0, 0} end
if z[4] == nil then
  if z[1] ~= nil and z[1] ~= 'b' then return {-1, 0, 0, 0, 0} end
  -- Nothing held (or the base alone, after a cancel): a fresh window.
  redis.call('ZADD', key, stamp, 'b', 0, member(0))
  redis.call('PEXPIRE', key, window)
  return {1, limit - units, 0, window, 0}
end
if z[3] ~= 'b' then return {-1, 0, 0, 0, 0} end
local base = tonumber(z[4])
local newest = base + tonumber(z[2])
local skew = 0
if now < newest then skew = newest - now; now = newest end
if stamp < now then stamp = now end

-- Entries scored at or before cut have aged out.
local cut = now - window - base
-- Members only: Redis 7.0 formats every score it hands to Lua with
-- printf, so times are read only when a denial or a merge needs them.
local live = redis.call('ZRANGEBYSCORE', key, '(' .. cut, '+inf')
local n = #live - 1 -- the base is last
local used, held = 0, {}
for i = 1, n do
  local s, u = parse(live[i])
  if not s then return {-1, 0, 0, 0, 0} end
  used = used + u
  held[s] = true
end

-- entries reads the live entries with their times, oldest first.
local function entries()
  local w = redis.call('ZRANGEBYSCORE', key, '(' .. cut, '+inf', 'WITHSCORES')
  local ents = {}
  for i = 1, n do
    local m = w[2 * i - 1]
    local _, u, r = parse(m)
    ents[i] = {m = m, at = base + tonumber(w[2 * i]), u = u, r = r}
  end
  return ents
end

-- include: lib/budget_capped.lua

local reset = newest + window - now
if used + units > limit then
  -- Entries age out oldest first: wait for the one after which these
  -- units fit.
  local freed, retry = 0, 0
  local ents = entries()
  for i = 1, n do
    freed = freed + ents[i].u
    if used - freed + units <= limit then
      retry = ents[i].at + window - now
      break
    end
  end
  local rem = limit - used
  if rem < 0 then rem = 0 end
  return {0, rem, capped(retry), capped(reset), 0}
end

-- Allowed. Past the listpack's bound, merge the two oldest entries that
-- are not live reservations.
local merge = nil
if n >= 127 then
  local ents = entries()
  local a = nil
  for i = 1, n do
    local e = ents[i]
    if not e.r or e.at + lease <= now then
      if a then merge = {a, e}; break end
      a = e
    end
  end
  if not merge then
    -- Wait until enough leases end for two entries to merge.
    local ends = {}
    for i = 1, n do
      local e = ents[i]
      if e.r and e.at + lease > now then ends[#ends + 1] = e.at + lease end
    end
    table.sort(ends)
    local need = 2 -- entries a merge takes, less those already mergeable
    if a then need = 1 end
    local rem = limit - used
    if rem < 0 then rem = 0 end
    return {0, rem, capped(ends[need] - now), capped(reset), 0}
  end
end

if n == 0 then
  -- Everything has aged out: a fresh window from now.
  redis.call('DEL', key)
  redis.call('ZADD', key, stamp, 'b', 0, member(0))
  redis.call('PEXPIRE', key, window + skew)
  return {1, limit - units, 0, window + skew, 0}
end
if cut >= 0 then
  redis.call('ZREMRANGEBYSCORE', key, '-inf', cut)
end
if merge then
  local a, b = merge[1], merge[2]
  local sa = parse(a.m)
  redis.call('ZREM', key, a.m, b.m)
  held[sa] = nil
  local sb = parse(b.m)
  redis.call('ZADD', key, b.at - base, string.format('%d', (a.u + b.u) * 128 + sb))
end
local slot = 0
while held[slot] do slot = slot + 1 end
local rel = stamp - base
if rel > 8388607 and rel > 2 * window then
  -- Rebase on the oldest live entry so relative scores stay small (a
  -- listpack stores them in 4 bytes up to 2^23); the new entry rides along.
  local e = redis.call('ZRANGE', key, 0, -2, 'WITHSCORES')
  local nb = base + tonumber(e[2])
  local args = {nb, 'b'}
  for i = 1, #e, 2 do
    args[#args + 1] = tonumber(e[i + 1]) + base - nb
    args[#args + 1] = e[i]
  end
  args[#args + 1] = stamp - nb
  args[#args + 1] = member(slot)
  redis.call('ZADD', key, unpack(args))
else
  redis.call('ZADD', key, rel, member(slot))
end
redis.call('PEXPIRE', key, window + skew)
return {1, limit - used - units, 0, window + skew, slot}
