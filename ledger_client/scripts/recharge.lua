-- recharge: credit coins once per payment id, on the user's partition.
-- KEYS: 1 balance, 2 payment record, 3 partition's recharged total
-- ARGV: 1 coins
-- Returns {1, credited, balance} or {0, credited the first time, balance} for a repeat.
local rec = redis.call('GET', KEYS[2])
if rec then
  return {0, tonumber(rec), tonumber(redis.call('GET', KEYS[1]) or '0')}
end
local nb = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[1])
redis.call('INCRBY', KEYS[3], ARGV[1])
return {1, tonumber(ARGV[1]), nb}
