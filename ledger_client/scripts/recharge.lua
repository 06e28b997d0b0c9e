-- recharge: credit coins once per payment id, on the user's partition, and record it in the
-- user's transactions.
-- KEYS: 1 balance, 2 payment record, 3 partition's recharged total, 4 transactions (list)
-- ARGV: 1 coins, 2 now_ms, 3 payment id, 4 package id ('' none), 5 transactions kept,
--       6 their ttl (ms)
-- Returns {1, credited, balance} or {0, credited the first time, balance} for a repeat.
-- The payment's record is "coins" or "coins package" (reverse.lua reads it).
local rec = redis.call('GET', KEYS[2])
if rec then
  return {0, tonumber(string.match(rec, '^%d+')), tonumber(redis.call('GET', KEYS[1]) or '0')}
end
local nb = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[4] == '' and ARGV[1] or ARGV[1] .. ' ' .. ARGV[4])
redis.call('INCRBY', KEYS[3], ARGV[1])
local pkg = ARGV[4] == '' and 'null' or '"' .. ARGV[4] .. '"'
if redis.call('LPUSH', KEYS[4], '{"type":"recharge","ts_ms":' .. ARGV[2] .. ',"coins":' .. ARGV[1] ..
    ',"balance":' .. nb .. ',"payment_id":"' .. ARGV[3] .. '","package":' .. pkg .. '}') >
    tonumber(ARGV[5]) + 64 then
  redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[5]) - 1)
end
redis.call('PEXPIRE', KEYS[4], ARGV[6])
return {1, tonumber(ARGV[1]), nb}
