-- budget: set or clear a user's daily coin cap; returns {cap or -1, spent today}.
-- KEYS: 1 limits (string "day spent_that_day [cap]", shared with gift.lua; day "0" before any
-- gift).  ARGV: 1 cap ('' clears it, '?' only reads), 2 today (YYYYMMDD, UTC).
local day, spent, cap = string.match(redis.call('GET', KEYS[1]) or '', '^(%d+) (%d+) ?(%d*)$')
if not day then
  day, spent, cap = '0', '0', ''
end
if ARGV[1] ~= '?' then
  cap = ARGV[1]
  redis.call('SET', KEYS[1], day .. ' ' .. spent .. (cap ~= '' and ' ' .. cap or ''))
end
return {cap ~= '' and tonumber(cap) or -1, day == ARGV[2] and tonumber(spent) or 0}
