-- outbox_sweep: on a Redis Cluster, the sends of a partition that were charged but not marked
-- published within the grace time (their node died between the two steps, or lost Redis):
-- the caller publishes them (publish.lua does it at most once) and clears them.
-- KEYS: 1 outbox.  ARGV: 1 now_ms, 2 grace ms, 3 most entries to return
-- Returns {field, entry, ...} of the entries older than the grace time.
local all = redis.call('HGETALL', KEYS[1])
local out = {}
local limit = tonumber(ARGV[1]) - tonumber(ARGV[2])
for i = 1, #all, 2 do
  local ts = tonumber(string.match(all[i + 1], '^(%d+)') or '0')
  if ts <= limit and #out < 2 * tonumber(ARGV[3]) then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
