-- settle_credit: step 3 of settling. Credits a creator's diamonds from one batch at most once,
-- on the creator's partition: a hash there keeps, per source partition, the seq of the last
-- batch credited (batches of a partition settle in order).
-- KEYS: 1 the creator's diamonds, 2 the creator's credit marks (hash: partition -> seq)
-- ARGV: 1 source partition, 2 batch seq, 3 diamonds
-- Returns 1 when credited now, 0 when this batch (or a later one) was already credited.
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
if tonumber(ARGV[2]) <= last then
  return 0
end
redis.call('INCRBY', KEYS[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
