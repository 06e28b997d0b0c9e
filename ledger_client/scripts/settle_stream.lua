-- settle_stream: step 2 of settling, redis-stream sink. Appends a batch's rows to the
-- settlements stream at most once, on the stream's slot: a hash there keeps, per source
-- partition, the seq of the last batch written, and batches of a partition settle in order.
-- KEYS: 1 stream, 2 written marks (hash: partition -> last batch seq)
-- ARGV: 1 batch id, 2 partition, 3 batch seq, then 8 per row: creator, room, gift, count,
--       coins, diamonds, first_ts_ms, last_ts_ms
-- Returns the number of entries added; 0 when this batch was already written; -1 when a later
-- batch of the partition was (a delayed re-delivery: nothing written).
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0')
local seq = tonumber(ARGV[3])
if seq < last then
  return -1
end
if seq == last then
  return 0
end
local n = 0
for i = 4, #ARGV - 7, 8 do
  redis.call('XADD', KEYS[1], '*', 'batch', ARGV[1], 'creator', ARGV[i], 'room', ARGV[i + 1],
    'gift', ARGV[i + 2], 'count', ARGV[i + 3], 'coins', ARGV[i + 4], 'diamonds', ARGV[i + 5],
    'first_ts_ms', ARGV[i + 6], 'last_ts_ms', ARGV[i + 7])
  n = n + 1
end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return n
