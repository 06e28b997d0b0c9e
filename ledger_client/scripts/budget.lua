-- budget: read, set or clear a user's daily and monthly coin caps.
-- KEYS: 1 limits (string "day spent_that_day month spent_that_month daily_cap monthly_cap",
--       shared with gift.lua; day YYYYMMDD and month YYYYMM, "0" before any gift; a cap is
--       "-" when not set)
-- ARGV: 1 daily cap, 2 monthly cap (each: '?' keeps it, '' clears it, else the coins),
--       3 today (YYYYMMDD, UTC)
-- Returns {daily cap or -1, monthly cap or -1, spent today, spent this month}.
local day, sd, month, sm, dcap, mcap = string.match(redis.call('GET', KEYS[1]) or '',
  '^(%d+) (%d+) (%d+) (%d+) (%S+) (%S+)$')
if not day then
  day, sd, month, sm, dcap, mcap = '0', '0', '0', '0', '-', '-'
end
if ARGV[1] ~= '?' or ARGV[2] ~= '?' then
  if ARGV[1] ~= '?' then
    dcap = ARGV[1] == '' and '-' or ARGV[1]
  end
  if ARGV[2] ~= '?' then
    mcap = ARGV[2] == '' and '-' or ARGV[2]
  end
  redis.call('SET', KEYS[1], table.concat({day, sd, month, sm, dcap, mcap}, ' '))
end
return {tonumber(dcap) or -1, tonumber(mcap) or -1, day == ARGV[3] and tonumber(sd) or 0,
  month == string.sub(ARGV[3], 1, 6) and tonumber(sm) or 0}
