-- room_presence: record this node's viewer count of a room, read the room's state, and publish
-- the room's viewers and leaderboard events when they changed (at most once per interval).
-- Each node owns one field of the presence hash, "count:expires_ms"; a node that dies stops
-- refreshing its field and its viewers stop counting once it expires.
-- While the room has viewers, its history's expiry is pushed on (lib/room.lua).
-- KEYS: 1 meta, 2 seq, 3 presence, 4 room state (hash), 5 leaderboard, 6 leaderboard names,
--       7 totals (string), 8 history
-- ARGV: 1 node id, 2 this node's count ('-' to only read), 3 now_ms, 4 ttl_ms,
--       5 interval ms ('-': publish nothing), 6 channel, 7 room, 8 leaderboard size,
--       9 history ttl (ms)
-- Returns {live, creator_id, creator_name, seq, viewers (all nodes), goal as JSON or 'null',
-- epoch} (a live room's seq key is made here when it has none, so that the epoch a join
-- reports is the one its gifts will carry).
-- A `goal` event goes out when the goal's progress changed, at most once per interval.
--#include room
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
if live and ARGV[5] ~= '-' then
  local interval = tonumber(ARGV[5])
  local st = redis.call('HMGET', KEYS[4], 'vcount', 'vts', 'lbcoins', 'lbts', 'gpub', 'gts')
  -- The leaderboard changed when the room's coins did (gift.lua keeps them in the totals
  -- string "gifts coins diamonds").
  local tot = redis.pcall('GET', KEYS[7])
  tot = type(tot) == 'string' and tot or ''
  local coins = string.match(tot, '^%d+ (%d+)') or '0'
  local gjson, gpub = room_goal_of(tot)
  if gpub ~= '' and (st[5] or '') ~= gpub and now - tonumber(st[6] or '0') >= interval then
    redis.call('HSET', KEYS[4], 'gpub', gpub, 'gts', now)
    room_publish(ARGV[6], '{"type":"goal","room":"' .. ARGV[7] .. '","goal":' .. gjson ..
      '}')
  end
  if tonumber(st[1] or '-1') ~= sum and now - tonumber(st[2] or '0') >= interval then
    redis.call('HSET', KEYS[4], 'vcount', sum, 'vts', now)
    room_publish(ARGV[6], '{"type":"viewers","room":"' .. ARGV[7] .. '","count":' .. sum .. '}')
  end
  if (st[3] or '0') ~= coins and now - tonumber(st[4] or '0') >= interval then
    redis.call('HSET', KEYS[4], 'lbcoins', coins, 'lbts', now)
    local top = redis.call('ZREVRANGE', KEYS[5], 0, tonumber(ARGV[8]) - 1, 'WITHSCORES')
    local parts, ids = {}, {}
    for i = 1, #top, 2 do
      ids[#ids + 1] = top[i]
    end
    -- The names in one call rather than one per entry.
    local names = #ids > 0 and redis.call('HMGET', KEYS[6], unpack(ids)) or {}
    for i = 1, #top, 2 do
      local name = names[(i + 1) / 2] or cjson.encode(top[i])
      parts[#parts + 1] = '{"id":"' .. top[i] .. '","name":' .. name .. ',"coins":' .. top[i + 1] .. '}'
    end
    room_publish(ARGV[6], '{"type":"leaderboard","room":"' .. ARGV[7] .. '","top":[' ..
      table.concat(parts, ',') .. ']}')
  end
end
local tot = redis.pcall('GET', KEYS[7])
local seq, epoch = 0, ''
if live then
  seq, epoch = room_seq(KEYS[2])
  if sum > 0 then
    redis.call('PEXPIRE', KEYS[8], ARGV[9])
  end
end
return {live and 1 or 0, meta[2] or '', meta[3] or '', seq, sum,
  (room_goal_of(type(tot) == 'string' and tot or '')), epoch}
