-- room_events: the kept events of a room after a seq (SPEC 3.4: resume; GET .../events).
-- KEYS: 1 meta, 2 seq, 3 history
-- ARGV: 1 since_seq, 2 limit, 3 history size (events kept), 4 history ttl (ms), 5 now_ms
-- Returns {-1} for a room that never existed, else {seq, epoch, flags, events…}: the events
-- after since_seq in seq order, at most limit; flags: 1 complete (none of the events after
-- since_seq was dropped yet: else the ones returned are those kept) + 2 the room is live.
--#include room
local live = redis.call('HGET', KEYS[1], 'live')
if not live then
  return {-1}
end
local last, epoch = room_seq(KEYS[2])
local events, complete = room_hist_after(KEYS[3], last, tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
return {last, epoch, (complete and 1 or 0) + (live == '1' and 2 or 0), unpack(events)}
