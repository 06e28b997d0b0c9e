-- sweep: under the partition's lease, list outbox entries older than the grace period.
-- KEYS: 1 lease, 2 outbox.  ARGV: 1 node id, 2 lease ms, 3 cutoff ms, 4 limit
-- Returns the payloads due (empty when another node holds the lease).
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return {}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[3], 'LIMIT', 0, tonumber(ARGV[4]))
