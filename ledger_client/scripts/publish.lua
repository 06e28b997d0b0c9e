-- publish: broadcast one committed gift to its room exactly once, on the room's hash tag.
-- Also keeps the sender's combo (streak): a streakable gift sent again within the window
-- continues it; anything else ends it first with a combo_end event. Time is Redis's clock.
-- KEYS: 1 seq, 2 dedup record of (sub, id), 3 totals, 4 leaderboard, 5 leaderboard names,
--       6 history (list, newest first), 7 combos (hash sub -> state), 8 combo deadlines (zset),
--       9 room state (hash: lbdirty ...)
-- ARGV: 1 event text before seq, 2 event text after seq up to "combo":, 3 event text after the
--       combo value, 4 channel, 5 dedup ttl (s), 6 sender id, 7 sender name as a JSON string,
--       8 coins, 9 diamonds, 10 count, 11 history cap, 12 gift id, 13 streakable (1/0),
--       14 '"from":{...},"gift":{...}' text, 15 combo window ms, 16 room
-- Returns {seq, 1} when published now, {seq, 0} when it had been published before.
local seen = redis.call('GET', KEYS[2])
if seen then
  return {tonumber(seen), 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cap = tonumber(ARGV[11]) - 1

local function emit(msg)
  redis.call('LPUSH', KEYS[6], msg)
  redis.call('LTRIM', KEYS[6], 0, cap)
  redis.call('PUBLISH', ARGV[4], msg)
end

local combo = 'null'
local state = redis.call('HGET', KEYS[7], ARGV[6])
local continues = false
if state then
  local g, n, total, last, fg = string.match(state, '^([^\31]*)\31(%d+)\31(%d+)\31(%d+)\31(.*)$')
  if ARGV[13] == '1' and g == ARGV[12] and now - tonumber(last) <= tonumber(ARGV[15]) then
    continues = true
    n = tonumber(n) + 1
    redis.call('HSET', KEYS[7], ARGV[6], g .. '\31' .. n .. '\31' .. (tonumber(total) + tonumber(ARGV[10])) ..
      '\31' .. now .. '\31' .. fg)
    combo = '{"count":' .. n .. '}'
  else
    local s = redis.call('INCR', KEYS[1])
    emit('{"type":"combo_end","room":"' .. ARGV[16] .. '","seq":' .. s .. ',' .. fg ..
      ',"combo":{"count":' .. n .. '},"total_count":' .. total .. ',"ts_ms":' .. now .. '}')
    redis.call('HDEL', KEYS[7], ARGV[6])
    redis.call('ZREM', KEYS[8], ARGV[6])
  end
end
if not continues and ARGV[13] == '1' then
  redis.call('HSET', KEYS[7], ARGV[6], ARGV[12] .. '\31' .. '1\31' .. ARGV[10] .. '\31' .. now .. '\31' .. ARGV[14])
  combo = '{"count":1}'
end
if ARGV[13] == '1' then
  redis.call('ZADD', KEYS[8], now + tonumber(ARGV[15]), ARGV[6])
end

local seq = redis.call('INCR', KEYS[1])
redis.call('SET', KEYS[2], seq, 'EX', ARGV[5])
redis.call('HINCRBY', KEYS[3], 'gifts', ARGV[10])
redis.call('HINCRBY', KEYS[3], 'coins', ARGV[8])
redis.call('HINCRBY', KEYS[3], 'diamonds', ARGV[9])
redis.call('ZINCRBY', KEYS[4], ARGV[8], ARGV[6])
redis.call('HSET', KEYS[5], ARGV[6], ARGV[7])
redis.call('HSET', KEYS[9], 'lbdirty', '1')
emit(ARGV[1] .. seq .. ARGV[2] .. combo .. ARGV[3])
return {seq, 1}
