-- publish: the second step of a gift on a Redis Cluster, on the room's slot: each send the
-- debit charged is numbered and broadcast once, as gift.lua does on one Redis: the room's
-- seq, the sender's combo, totals, leaderboard, goal, history, and one PUBLISH of the room's
-- events. A send published before (a retry, or the outbox sweeper racing its node) is not
-- published again: its record pub:<id>:<sub> answers its seq. Time for combos is Redis's.
-- KEYS: 1 seq, 2 totals, 3 lb, 4 lbnames, 5 hist, 6 combodue, then 2 per send: combos:<sub>,
--       pub:<id>:<sub>
-- ARGV: 1 combo window ms, 2 history cap, 3 history ttl (ms), 4 publish record ttl (s),
--       5 room, 6 channel, then 9 per send: sub, id, cost, count, diamonds, name as JSON
--       text, '"from":...,"gift":{...}' text, gift id|streakable|anonymous, ts_ms
-- Returns the seq of each send's gift event.
--#include room
local fmt = string.format
local match = string.match
local window, cap, histttl, pttl = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], ARGV[4]
local room = ARGV[5]
local t = redis.call('TIME')
local rnow = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rnow_s = fmt('%d', rnow)
local due_s = fmt('%d', rnow + window)
local seq, epoch = room_seq_parse(redis.call('GET', KEYS[1]))
local g, c, d, goalpart = match(redis.call('GET', KEYS[2]) or '', '^(%d+) (%d+) (%d+)(.*)$')
local tot = {tonumber(g or '0'), tonumber(c or '0'), tonumber(d or '0')}
local goal = room_goal_parse(goalpart)
local ev, out, lb, names = {}, {}, {}, {}
local ns = 0
for i = 7, #ARGV, 9 do
  local kc, kp = KEYS[7 + 2 * ns], KEYS[8 + 2 * ns]
  ns = ns + 1
  local done = redis.call('GET', kp)
  if done then
    out[ns] = tonumber(done)
  else
    local sub, id, cost_s, count, dia, fg, ts = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
      ARGV[i + 4], ARGV[i + 6], ARGV[i + 8]
    local cost = tonumber(cost_s)
    local gid, streak, anon = match(ARGV[i + 7], '^([^|]*)|(.)|(.)$')
    local cgid = anon == '1' and gid .. '*' or gid
    -- The sender's combo, as gift.lua keeps it ("gift US count US total US deadline US fg").
    local combo, continues = 'null', false
    local state = redis.call('GET', kc)
    if state then
      local cg, n, total, due, at = match(state, '^([^\31]*)\31(%d+)\31(%d+)\31(%d+)\31()')
      if streak == '1' and cg == cgid and rnow <= tonumber(due) then
        continues = true
        n = fmt('%d', tonumber(n) + 1)
        redis.call('SET', kc, cg .. '\31' .. n .. '\31' ..
          fmt('%d', tonumber(total) + tonumber(count)) .. '\31' .. due_s .. '\31' ..
          string.sub(state, at))
        combo = '{"count":' .. n .. '}'
      else
        seq = seq + 1
        ev[#ev + 1] = '{"type":"combo_end","room":"' .. room .. '","seq":' .. fmt('%d', seq) ..
          ',' .. string.sub(state, at) .. ',"combo":{"count":' .. n .. '},"total_count":' ..
          total .. ',"ts_ms":' .. rnow_s .. '}'
        redis.call('DEL', kc)
        if streak ~= '1' then
          redis.call('ZREM', KEYS[6], sub)
        end
      end
    end
    if streak == '1' and not continues then
      redis.call('SET', kc, cgid .. '\31' .. '1\31' .. count .. '\31' .. due_s .. '\31' .. fg)
      redis.call('ZADD', KEYS[6], due_s, sub)
      combo = '{"count":1}'
    end
    tot[1] = tot[1] + tonumber(count)
    tot[2] = tot[2] + cost
    tot[3] = tot[3] + tonumber(dia)
    local sender_coins = 'null'
    if anon ~= '1' then
      local got = redis.call('ZINCRBY', KEYS[3], cost_s, sub)
      if got == cost_s and not lb[sub] then
        names[#names + 1] = sub
        names[#names + 1] = ARGV[i + 5]
      end
      lb[sub] = true
      sender_coins = fmt('%d', tonumber(got))
    end
    seq = seq + 1
    local seq_s = fmt('%d', seq)
    ev[#ev + 1] = '{"type":"gift","room":"' .. room .. '","seq":' .. seq_s .. ',"id":"' .. id ..
      '",' .. fg .. ',"count":' .. count .. ',"combo":' .. combo ..
      ',"totals":{"room_coins":' .. fmt('%d', tot[2]) .. ',"sender_coins":' .. sender_coins ..
      '},"ts_ms":' .. ts .. '}'
    out[ns] = seq
    redis.call('SET', kp, seq_s, 'EX', pttl)
    local reached = room_goal_step(goal, room, gid, cost, tonumber(count), seq + 1, ts)
    if reached then
      seq = seq + 1
      ev[#ev + 1] = reached
    end
  end
end
if #ev > 0 then
  redis.call('SET', KEYS[1], fmt('%d', seq) .. ' ' .. epoch)
  redis.call('SET', KEYS[2], room_totals_text(tot[1], tot[2], tot[3], goal))
  if #names > 0 then
    redis.call('HSET', KEYS[4], unpack(names))
  end
  room_hist_push(KEYS[5], ev, cap, histttl)
  room_publish(ARGV[6], '@' .. epoch .. '\n' .. table.concat(ev, '\n'))
end
return out
