-- overlay: a control for a room's overlays (skip, pause, resume, or replay one kept event),
-- published on the room's channel; nodes pass it to the room's overlay connections only.
-- KEYS: 1 meta, 2 seq, 3 history
-- ARGV: 1 action, 2 seq to replay ('' for the other actions), 3 the caller ('' for the
--       service, else a user who must be the room's creator), 4 history size, 5 history ttl
--       (ms), 6 now_ms, 7 channel, 8 room
-- Returns {-1} for a room that never existed, {-2} when the caller is not its creator, {-3}
-- when the event to replay is not kept, else {1, the overlay event as JSON text}.
--#include room
local m = redis.call('HMGET', KEYS[1], 'live', 'creator_id')
if not m[1] then
  return {-1}
end
if ARGV[3] ~= '' and ARGV[3] ~= m[2] then
  return {-2}
end
local msg = '{"type":"overlay","room":"' .. ARGV[8] .. '","action":"' .. ARGV[1] .. '"'
if ARGV[1] == 'replay' then
  local want = tonumber(ARGV[2])
  local last = room_seq(KEYS[2])
  local events = room_hist_after(KEYS[3], last, want - 1, 1, tonumber(ARGV[4]),
    tonumber(ARGV[5]), tonumber(ARGV[6]))
  if not events[1] or tonumber(string.match(events[1], '"seq":(%d+)')) ~= want then
    return {-3}
  end
  msg = msg .. ',"event":' .. events[1]
end
msg = msg .. '}'
room_publish(ARGV[7], msg)
return {1, msg}
