-- lib/user_wait.lua: what denies a user's request at now, and for how
-- long, written once for user_allow.lua and user_peek.lua so that Peek
-- reports what Allow decides; a snippet (see lib/clock.lua). Reads
-- cooldown, window, now, newest (the newest entry: the cooldown clock)
-- and oldest (the entry that must age out first; nil while the window has
-- room); sets reason (0 none, 1 cooldown, 2 window: the longer wait when
-- both deny) and retry (the wait in ms, 0 when nothing denies).
do
  local cwait, wwait = 0, 0
  if cooldown > 0 then cwait = newest + cooldown - now end
  if oldest then wwait = oldest + window - now end
  if wwait > 0 and wwait > cwait then
    reason, retry = 2, wwait
  elseif cwait > 0 then
    reason, retry = 1, cwait
  else
    reason, retry = 0, 0
  end
end
