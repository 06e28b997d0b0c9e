-- room_events: the kept events of a room after a seq (SPEC 3.4: resume; GET .../events).
-- KEYS: 1 meta, 2 seq, 3 history
-- ARGV: 1 since_seq, 2 limit, 3 history size (events kept), 4 history ttl (ms), 5 now_ms
-- Returns {-1} for a room that never existed, else {seq, epoch, complete (1|0), events…}:
-- the events after since_seq in seq order, at most limit; complete is 0 when some of the
-- events after since_seq were already dropped (the ones returned are those kept).
--#include room
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {-1}
end
local last, epoch = room_seq(KEYS[2])
local events, complete = room_hist_after(KEYS[3], last, tonumber(ARGV[1]), tonumber(ARGV[2]),
  tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]))
return {last, epoch, complete and 1 or 0, unpack(events)}
