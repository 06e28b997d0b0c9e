-- room_info: a room's public state for GET /v1/rooms/{room}.
-- KEYS: 1 meta, 2 totals, 3 leaderboard, 4 leaderboard names, 5 presence, 6 seq
-- ARGV: 1 now_ms, 2 top N
-- Returns {-1} for an unknown room, else {live, creator_id, creator_name, title, gifts, coins,
-- diamonds, viewers, seq, session, {id, coins, name as JSON text, ...}, goal JSON or 'null',
-- epoch}.
--#include room
local m = redis.call('HMGET', KEYS[1], 'live', 'creator_id', 'creator_name', 'title', 'session')
if not m[1] then
  return {-1}
end
local now = tonumber(ARGV[1])
local sum = 0
local all = redis.call('HGETALL', KEYS[5])
for i = 1, #all, 2 do
  local c, exp = string.match(all[i + 1], '^(%d+):(%d+)$')
  if c and tonumber(exp) >= now then
    sum = sum + tonumber(c)
  end
end
local tot = redis.pcall('GET', KEYS[2])
tot = type(tot) == 'string' and tot or ''
local t = {string.match(tot, '^(%d+) (%d+) (%d+)')}
local top = redis.call('ZREVRANGE', KEYS[3], 0, tonumber(ARGV[2]) - 1, 'WITHSCORES')
local flat = {}
for i = 1, #top, 2 do
  flat[#flat + 1] = top[i]
  flat[#flat + 1] = top[i + 1]
  flat[#flat + 1] = redis.call('HGET', KEYS[4], top[i]) or cjson.encode(top[i])
end
local seq, epoch = room_seq(KEYS[6])
return {m[1] == '1' and 1 or 0, m[2] or '', m[3] or '', m[4] or '', tonumber(t[1] or '0'),
  tonumber(t[2] or '0'), tonumber(t[3] or '0'), sum, seq, tonumber(m[5] or '0'), flat,
  (room_goal_of(tot)), epoch}
