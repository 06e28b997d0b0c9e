-- publish: broadcast one committed gift to its room exactly once, on the room's hash tag.
-- KEYS: 1 seq, 2 dedup record of (sub, id), 3 totals, 4 leaderboard, 5 leaderboard names,
--       6 history (list, newest first)
-- ARGV: 1 event text before seq, 2 event text after seq, 3 channel, 4 dedup ttl (s),
--       5 sender id, 6 sender name, 7 coins, 8 diamonds, 9 count, 10 history cap
-- Returns {seq, 1} when published now, {seq, 0} when it had been published before.
local seen = redis.call('GET', KEYS[2])
if seen then
  return {tonumber(seen), 0}
end
local seq = redis.call('INCR', KEYS[1])
local msg = ARGV[1] .. seq .. ARGV[2]
redis.call('SET', KEYS[2], seq, 'EX', ARGV[4])
redis.call('HINCRBY', KEYS[3], 'gifts', ARGV[9])
redis.call('HINCRBY', KEYS[3], 'coins', ARGV[7])
redis.call('HINCRBY', KEYS[3], 'diamonds', ARGV[8])
redis.call('ZINCRBY', KEYS[4], ARGV[7], ARGV[5])
redis.call('HSET', KEYS[5], ARGV[5], ARGV[6])
redis.call('LPUSH', KEYS[6], msg)
redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[10]) - 1)
redis.call('PUBLISH', ARGV[3], msg)
return {seq, 1}
