-- reverse: take back, once, exactly the coins a recharge credited (its payment was refunded or
-- charged back), even when they were spent: the balance may go below zero (debt), and a user
-- in debt can send no gift until recharges cover it. Diamonds already earned stay earned.
-- KEYS: 1 balance, 2 the payment's record (recharge.lua: "coins" or "coins package"),
--       3 the reversal's record, 4 partition's reversed total, 5 transactions (list)
-- ARGV: 1 now_ms, 2 payment id, 3 reason as JSON text ('null' none), 4 transactions kept,
--       5 their ttl (ms)
-- Returns {1, reversed, balance}; {0, reversed the first time, balance} for a repeat;
-- {-1, 0, balance} when the payment was never recharged (nothing changed).
local done = redis.call('GET', KEYS[3])
if done then
  return {0, tonumber(done), tonumber(redis.call('GET', KEYS[1]) or '0')}
end
local rec = redis.call('GET', KEYS[2])
local coins, pkg
if rec then
  coins, pkg = string.match(rec, '^(%d+) ?(%S*)$')
end
if not coins then
  return {-1, 0, tonumber(redis.call('GET', KEYS[1]) or '0')}
end
local nb = redis.call('DECRBY', KEYS[1], coins)
redis.call('SET', KEYS[3], coins)
redis.call('INCRBY', KEYS[4], coins)
if redis.call('LPUSH', KEYS[5], '{"type":"reversal","ts_ms":' .. ARGV[1] .. ',"coins":-' .. coins ..
    ',"balance":' .. nb .. ',"payment_id":"' .. ARGV[2] .. '","package":' ..
    (pkg ~= '' and '"' .. pkg .. '"' or 'null') .. ',"reason":' .. ARGV[3] .. '}') >
    tonumber(ARGV[4]) + 64 then
  redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[4]) - 1)
end
redis.call('PEXPIRE', KEYS[5], ARGV[5])
return {1, tonumber(coins), nb}
