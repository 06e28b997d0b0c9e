-- room_open: open (or re-open) a room for a new live session. Keys share the room's hash tag.
-- KEYS: 1 meta, 2 totals, 3 leaderboard, 4 leaderboard names
-- ARGV: 1 creator id, 2 creator name, 3 title ('' keeps a live room's title), 4 now_ms, 5 channel, 6 room_opened control text
-- (nodes with viewers still attached to the room learn that it is live again)
-- Returns {1, session, opened_now} or {0, other_creator} when live with another creator.
--#include room
local live = redis.call('HGET', KEYS[1], 'live')
if live == '1' then
  local cid = redis.call('HGET', KEYS[1], 'creator_id')
  if cid ~= ARGV[1] then
    return {0, cid}
  end
  redis.call('HSET', KEYS[1], 'creator_name', ARGV[2])
  if ARGV[3] ~= '' then
    redis.call('HSET', KEYS[1], 'title', ARGV[3])
  end
  return {1, tonumber(redis.call('HGET', KEYS[1], 'session')), 0}
end
local session = redis.call('HINCRBY', KEYS[1], 'session', 1)
redis.call('HSET', KEYS[1], 'live', '1', 'creator_id', ARGV[1], 'creator_name', ARGV[2],
  'title', ARGV[3], 'opened_ms', ARGV[4])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
room_publish(ARGV[5], ARGV[6])
return {1, session, 1}
