-- combo: end the combos (streaks) of a room whose window has passed ('due'), or all of them
-- ('all', when the room closes), each with exactly one combo_end event. Time is Redis's clock.
-- KEYS: 1 seq, 2 combos (hash sub -> state), 3 combo deadlines (zset), 4 history
-- ARGV: 1 mode 'due' | 'all', 2 channel, 3 room, 4 history cap
-- Returns {ended, next deadline ms or -1, now ms}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local subs
if ARGV[1] == 'all' then
  subs = redis.call('ZRANGE', KEYS[3], 0, -1)
else
  subs = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
end
local ended = 0
for _, sub in ipairs(subs) do
  local state = redis.call('HGET', KEYS[2], sub)
  if state then
    local _, n, total, _, fg = string.match(state, '^([^\31]*)\31(%d+)\31(%d+)\31(%d+)\31(.*)$')
    local s = redis.call('INCR', KEYS[1])
    local msg = '{"type":"combo_end","room":"' .. ARGV[3] .. '","seq":' .. s .. ',' .. fg ..
      ',"combo":{"count":' .. n .. '},"total_count":' .. total .. ',"ts_ms":' .. now .. '}'
    redis.call('LPUSH', KEYS[4], msg)
    redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[4]) - 1)
    redis.call('PUBLISH', ARGV[2], msg)
    ended = ended + 1
  end
  redis.call('HDEL', KEYS[2], sub)
  redis.call('ZREM', KEYS[3], sub)
end
local nxt = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return {ended, nxt[2] and tonumber(nxt[2]) or -1, now}
