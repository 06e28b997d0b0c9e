-- combo: end the combos (streaks) of a room whose window has passed ('due'), or all of them
-- ('all', when the room closes), each with exactly one combo_end event. Time is Redis's clock.
-- A combo's state is the string key <combos>:<sub> (gift.lua writes it: "gift US count US
-- total US deadline_ms US from+gift JSON"); the zset holds the deadline the combo started
-- with, so a combo that went on past it is put back at its current deadline here.
-- KEYS: 1 seq, 2 combos (the prefix of the state keys), 3 combo deadlines (zset), 4 history
-- ARGV: 1 mode 'due' | 'all', 2 channel, 3 room, 4 history cap, 5 history ttl (ms)
-- Returns {ended, next deadline ms or -1, now ms}.
--#include room
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
  local k = KEYS[2] .. ':' .. sub
  local state = redis.call('GET', k)
  local _, n, total, due, fg
  if state then
    _, n, total, due, fg = string.match(state, '^([^\31]*)\31(%d+)\31(%d+)\31(%d+)\31(.*)$')
  end
  if due and ARGV[1] ~= 'all' and tonumber(due) >= now then
    redis.call('ZADD', KEYS[3], due, sub)
  else
    if due then
      local s, epoch = room_seq(KEYS[1])
      s = string.format('%d', s + 1)
      redis.call('SET', KEYS[1], s .. ' ' .. epoch)
      local msg = '{"type":"combo_end","room":"' .. ARGV[3] .. '","seq":' .. s .. ',' .. fg ..
        ',"combo":{"count":' .. n .. '},"total_count":' .. total .. ',"ts_ms":' .. now .. '}'
      room_hist_push(KEYS[4], {msg}, tonumber(ARGV[4]), ARGV[5])
      room_publish(ARGV[2], '@' .. epoch .. '\n' .. msg)
      ended = ended + 1
    end
    redis.call('DEL', k)
    redis.call('ZREM', KEYS[3], sub)
  end
end
local nxt = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
return {ended, nxt[2] and tonumber(nxt[2]) or -1, now}
