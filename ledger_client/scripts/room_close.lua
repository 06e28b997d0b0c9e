-- room_close: end a room's live session and tell every node's viewers (PUBLISH room_closed).
-- KEYS: 1 meta.  ARGV: 1 now_ms, 2 channel, 3 room_closed event text.
-- Returns 1 when the room was live, 0 when it was already closed, -1 when it never existed.
--#include room
local live = redis.call('HGET', KEYS[1], 'live')
if not live then
  return -1
end
if live ~= '1' then
  return 0
end
redis.call('HSET', KEYS[1], 'live', '0', 'closed_ms', ARGV[1])
room_publish(ARGV[2], ARGV[3])
return 1
