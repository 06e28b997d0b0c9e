-- room_presence: record this node's viewer count of a room and read the room's state.
-- Each node owns one field of the presence hash, "count:expires_ms"; a node that dies stops
-- refreshing its field and its viewers stop counting once it expires.
-- KEYS: 1 meta, 2 seq, 3 presence
-- ARGV: 1 node id, 2 this node's count ('-' to only read), 3 now_ms, 4 ttl_ms
-- Returns {live, creator_id, creator_name, seq, viewers (all nodes)}.
local now = tonumber(ARGV[3])
local meta = redis.call('HMGET', KEYS[1], 'live', 'creator_id', 'creator_name')
local live = meta[1] == '1'
if ARGV[2] ~= '-' then
  local n = tonumber(ARGV[2])
  if n > 0 and live then
    redis.call('HSET', KEYS[3], ARGV[1], n .. ':' .. (now + tonumber(ARGV[4])))
  else
    redis.call('HDEL', KEYS[3], ARGV[1])
  end
end
local sum = 0
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  local c, exp = string.match(all[i + 1], '^(%d+):(%d+)$')
  if not c or tonumber(exp) < now then
    redis.call('HDEL', KEYS[3], all[i])
  else
    sum = sum + tonumber(c)
  end
end
return {live and 1 or 0, meta[2] or '', meta[3] or '', tonumber(redis.call('GET', KEYS[2]) or '0'), sum}
