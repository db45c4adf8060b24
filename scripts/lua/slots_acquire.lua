-- slots_acquire.lua: try to take one slot of a pool of concurrent-user
-- slots, first come first served, atomically.
--
-- KEYS[1]  holders: floodgate:{s:<pool>}:h, a sorted set of lease members
--          scored by lease expiry (ms since the Unix epoch, Redis TIME).
-- KEYS[2]  waiters: floodgate:{s:<pool>}:w, a sorted set of the members
--          waiting in Acquire, scored by arrival (µs, Redis TIME): the FIFO.
-- KEYS[3]  waiter liveness: floodgate:{s:<pool>}:e, the same members scored
--          by heartbeat expiry (ms). A waiter that stops polling (cancelled,
--          crashed) is dropped from both sets once this passes.
-- ARGV[1]  pool size, 1..1048576
-- ARGV[2]  lease in ms
-- ARGV[3]  member: a unique lease token followed by the holder's name
-- ARGV[4]  mode: 0 = TryAcquire (never queue), 1 = Acquire (queue and poll)
-- ARGV[5]  waiter heartbeat TTL in ms (mode 1)
-- ARGV[6]  arrival in µs from this waiter's earlier poll, 0 on the first:
--          a waiter whose entry lapsed (a long pause) rejoins at its place
-- ARGV[7..] members this replica owes a leave: grants or queue entries whose
--          reply was lost while Redis failed. They are removed first.
--
-- Expired leases and waiters are pruned first. Then, with free = size -
-- live holders and waiting = live waiters:
--   mode 0 takes a slot only if free > waiting: it never takes a slot that
--          a live waiter is entitled to;
--   mode 1 takes a slot if its rank among waiters (0 = earliest) is below
--          free: every waiter ahead of it has a free slot too. Otherwise it
--          joins or stays in the queue and renews its heartbeat.
-- Polling again with a member that already holds a live lease (the reply
-- of an earlier poll was lost) returns that grant again.
--
-- Returns {1, remaining, 0, 0} when granted (remaining = free slots left),
-- else {0, position, arrival_us, hint_ms}: position among waiters (-1 in
-- mode 0), the arrival to pass back in ARGV[6], and hint_ms, how long
-- until the earliest lease expires when the pool is full (0 otherwise).
-- Every key's TTL is the time until its last entry expires. A key that is
-- not a sorted set fails the call with WRONGTYPE before anything is
-- written.

local holders, waiters, alive = KEYS[1], KEYS[2], KEYS[3]
local size = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local member = ARGV[3]
local mode = tonumber(ARGV[4])
local wttl = tonumber(ARGV[5])
local arrival = tonumber(ARGV[6])

-- include: lib/clock_us.lua
local nowus = now_us
local now = math.floor(nowus / 1000)

local function int(x) return string.format('%d', x) end

-- Sets a sorted set's TTL to when its latest score (an expiry in ms)
-- passes, and returns that TTL (0 when the set is empty).
local function expire_at_last(key)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if #last == 0 then return 0 end
  local ttl = tonumber(last[2]) - now
  if ttl < 1 then ttl = 1 end
  redis.call('PEXPIRE', key, int(ttl))
  return ttl
end

-- All of its effects or none: a key of another type fails the call here
-- (WRONGTYPE), before the first write below. ZCARD only reads; the
-- counts then follow what is removed (ZREM and ZREMRANGEBYSCORE reply
-- how many), so no second ZCARD is needed.
local held = redis.call('ZCARD', holders)
local waiting = redis.call('ZCARD', waiters)
redis.call('ZCARD', alive)

for i = 7, #ARGV do
  held = held - redis.call('ZREM', holders, ARGV[i])
  waiting = waiting - redis.call('ZREM', waiters, ARGV[i])
  redis.call('ZREM', alive, ARGV[i])
end

held = held - redis.call('ZREMRANGEBYSCORE', holders, '-inf', int(now))
local gone = redis.call('ZRANGEBYSCORE', alive, '-inf', int(now))
if #gone > 0 then
  -- ZREM in chunks: unpack is bounded by Lua's C stack.
  for i = 1, #gone, 1000 do
    waiting = waiting - redis.call('ZREM', waiters, unpack(gone, i, math.min(i + 999, #gone)))
  end
  redis.call('ZREMRANGEBYSCORE', alive, '-inf', int(now))
end

local free = size - held

local function hint()
  if free > 0 then return 0 end
  local first = redis.call('ZRANGE', holders, 0, 0, 'WITHSCORES')
  return tonumber(first[2]) - now
end

local function grant()
  redis.call('ZADD', holders, int(now + lease), member)
  expire_at_last(holders)
  return {1, free - 1, 0, 0}
end

local mine = redis.call('ZSCORE', holders, member)
if mine then
  redis.call('ZREM', waiters, member)
  redis.call('ZREM', alive, member)
  return {1, free, 0, 0}
end

if mode == 0 then
  if free > waiting then return grant() end
  return {0, -1, 0, hint()}
end

local rank = redis.call('ZRANK', waiters, member)
if not rank then
  if free > waiting then return grant() end
  if arrival == 0 then arrival = nowus end
  redis.call('ZADD', waiters, int(arrival), member)
  rank = redis.call('ZRANK', waiters, member)
else
  arrival = tonumber(redis.call('ZSCORE', waiters, member))
end

if rank < free then
  redis.call('ZREM', waiters, member)
  redis.call('ZREM', alive, member)
  return grant()
end

redis.call('ZADD', alive, int(now + wttl), member)
local ttl = expire_at_last(alive)
redis.call('PEXPIRE', waiters, int(ttl))
return {0, rank, arrival, hint()}
