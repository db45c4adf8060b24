-- lib/user_store.lua: writes times (accepted requests, ms since the Unix
-- epoch, ascending, at least one) into key, which does not exist, laid out
-- as user_allow.lua's header says: ids 0.. in turn, scores relative to the
-- base, the expiry at the newest plus the window. For user_import.lua and
-- for lib/user_decide_window.lua carrying over an older layout's key. A
-- snippet (see lib/clock.lua); reads key, times, window and block (lib/
-- user_block.lua); sets exp and base.
exp = times[#times] + window
base = exp - exp % block
do
  local args = {}
  for i, t in ipairs(times) do
    args[2 * i - 1] = string.format('%d', t - base)
    args[2 * i] = i - 1
  end
  redis.call('ZADD', key, unpack(args))
end
redis.call('PEXPIREAT', key, string.format('%d', exp))
