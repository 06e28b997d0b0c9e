-- goal: set or clear the goal of a live room, and tell the room at once (a `goal` event).
-- The goal lives in the room's totals string after "gifts coins diamonds": US id US gift ('' for
-- a coin goal) US target US current US reached (0|1) US title JSON; gift.lua moves it on.
-- KEYS: 1 meta, 2 totals
-- ARGV: 1 'set' | 'clear', 2 the caller ('' for the service, else a user who must be the
--       room's creator), 3 gift ('' for coins), 4 target, 5 title as JSON text, 6 channel,
--       7 room
-- Returns {-1} when the room is not live, {-2} when the caller is not its creator, else
-- {1, the goal as JSON text, or 'null'}.
--#include room
local m = redis.call('HMGET', KEYS[1], 'live', 'creator_id')
if m[1] ~= '1' then
  return {-1}
end
if ARGV[2] ~= '' and ARGV[2] ~= m[2] then
  return {-2}
end
local tot = redis.pcall('GET', KEYS[2])
local base = string.match(type(tot) == 'string' and tot or '', '^(%d+ %d+ %d+)') or '0 0 0'
if ARGV[1] == 'set' then
  local id = 'g' .. redis.call('HINCRBY', KEYS[1], 'goal_seq', 1)
  base = base .. '\31' .. id .. '\31' .. ARGV[3] .. '\31' .. ARGV[4] .. '\31' .. '0\31' ..
    '0\31' .. ARGV[5]
end
redis.call('SET', KEYS[2], base)
local json = room_goal_of(base)
room_publish(ARGV[6], '{"type":"goal","room":"' .. ARGV[7] .. '","goal":' .. json .. '}')
return {1, json}
