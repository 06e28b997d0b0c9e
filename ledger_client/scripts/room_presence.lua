-- room_presence: record this node's viewer count of a room, read the room's state, and publish
-- the room's viewers and leaderboard events when they changed (at most once per interval).
-- Each node owns one field of the presence hash, "count:expires_ms"; a node that dies stops
-- refreshing its field and its viewers stop counting once it expires.
-- While the room has viewers, its history's expiry is pushed on (lib/room.lua), at least every
-- eighth of that expiry (the state hash's hts says when it last was).
-- Every interval, per room and node, so what a tick with nothing new costs is what an idle
-- room costs Redis: one HMGET of meta, one HGETALL of presence, one HMGET of state, one GET of
-- totals, one GET of seq. This node's field is only rewritten when its count changed or half
-- its lifetime has passed.
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
local ttl = tonumber(ARGV[4])
local meta = redis.call('HMGET', KEYS[1], 'live', 'creator_id', 'creator_name')
local live = meta[1] == '1'
-- The other nodes' live counts; an expired or unreadable field is dropped.
local sum, mine, mine_exp = 0, nil, nil
local all = redis.call('HGETALL', KEYS[3])
for i = 1, #all, 2 do
  local c, exp = string.match(all[i + 1], '^(%d+):(%d+)$')
  if c and all[i] == ARGV[1] then
    mine, mine_exp = c, exp + 0
  elseif not c or exp + 0 < now then
    redis.call('HDEL', KEYS[3], all[i])
  else
    sum = sum + c
  end
end
-- This node's count: the one it reports, or (reading only) the one it reported while valid.
local n = ARGV[2] ~= '-' and tonumber(ARGV[2]) or nil
if n and n > 0 and live then
  if mine ~= ARGV[2] or mine_exp - now < ttl / 2 then
    redis.call('HSET', KEYS[3], ARGV[1], n .. ':' .. (now + ttl))
  end
  sum = sum + n
elseif mine and (n or mine_exp < now) then
  redis.call('HDEL', KEYS[3], ARGV[1])
elseif mine then
  sum = sum + mine
end
local tot = redis.pcall('GET', KEYS[7])
tot = type(tot) == 'string' and tot or ''
if live and ARGV[5] ~= '-' then
  local interval = tonumber(ARGV[5])
  local st = redis.call('HMGET', KEYS[4], 'vcount', 'vts', 'lbcoins', 'lbts', 'gpub', 'gts',
    'hts')
  if sum > 0 and now - tonumber(st[7] or '0') >= tonumber(ARGV[9]) / 8 then
    redis.call('PEXPIRE', KEYS[8], ARGV[9])
    redis.call('HSET', KEYS[4], 'hts', now)
  end
  -- The leaderboard changed when the room's coins did (gift.lua keeps them in the totals
  -- string "gifts coins diamonds").
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
local seq, epoch = 0, ''
if live then
  seq, epoch = room_seq(KEYS[2])
end
return {live and 1 or 0, meta[2] or '', meta[3] or '', seq, sum, (room_goal_of(tot)), epoch}
