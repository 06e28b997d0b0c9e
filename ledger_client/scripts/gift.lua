-- gift: charge and broadcast a batch of gift sends, each on its own, in one atomic step.
-- For each send, in order: the idempotency record of (sub, id) answers a retry with the first
-- outcome; then budget and balance are checked before anything is written (Redis has no
-- rollback); then the debit, the day's spending, the idempotency record, the creator's pending
-- earnings, the room's seq, combo, totals, leaderboard, history and broadcast. Sends of one
-- batch see each other's writes, so a duplicate inside a batch is answered as a retry.
-- Cost: every redis.call costs about a microsecond and a half whatever it does, a Lua number
-- handed to Redis another half (it is printed with %.17g), a small table a half, a pattern
-- match a half. So the batch reads every string key it needs in one MGET, works on them in Lua
-- with flat arrays, and writes them back as strings in one MSET (plus one SET ... EX per
-- idempotency record); the work shared by the sends of a room (leaderboard, history, PUBLISH)
-- or of a partition (pending earnings) is done once per batch. Measured in instructions
-- (callgrind, BENCHMARKS.md), tonumber(s) converts twice where s + 0 converts once, and
-- string.format costs more than concatenation for the event texts.
-- Pending earnings are appended to the partition's log (pendlog, one entry per charged send:
-- "creator US room US gift RS count coins diamonds ts_ms", one RPUSH per partition per batch),
-- which settle_begin.lua folds into the pending hash: a gift reads nothing there.
-- Time for combos is Redis's clock. Keys are derived from the prefixes the caller passes
-- (ledger_client/keys.c names them); a room's keys share its hash tag.
-- User keys: bal (string), limits (string "day spent_that_day month spent_that_month
-- daily_cap monthly_cap": day YYYYMMDD, month YYYYMM, "0" before any gift; a cap is "-" when
-- not set; budget.lua writes the caps), idem:<id>:<sub>, tx:<sub> (list, newest first: the
-- user's transactions as JSON text; trimmed to its cap once 64 over; its expiry is pushed on
-- at the user's first gift of a UTC day, and by recharges).
-- Room keys: seq (string "seq epoch", lib/room.lua), totals (string "gifts coins diamonds",
-- then, while the room has a goal, US id US gift ('' for coins) US target US current US
-- reached (0|1) US title JSON; goal.lua sets it), combos:<sub> (string
-- "gift US count US total US deadline_ms US from+gift JSON"), combodue (zset: a combo's first
-- deadline; combo.lua moves it on while the combo goes on), lb, lbnames, hist, the channel.
-- ARGV: 1 now_ms (node clock: ts_ms of the events, pending windows), 2 idempotency ttl (s),
--       3 combo window ms, 4 history cap, 5 UTC day (YYYYMMDD), 6 transactions kept per
--       user, 7 their ttl (ms), 8 the room history's ttl (ms), then 12 per send:
--       partition prefix, sub, id, digest (gift:count), cost, creator, room, count,
--       diamonds, sender name as JSON text, '"from":...,"anonymous":...,"gift":{...}' text,
--       gift id .. '|' .. (1 streakable | 0) .. '|' .. (1 anonymous | 0)
-- An anonymous send stays off the leaderboard (its event's totals.sender_coins is null) and
-- its combo is apart from the sender's named one (the combo's gift is "<id>*").
-- Returns 3 values per send: 1, balance, seq (committed now); 2, balance, seq (a retry of a
-- committed send: its first outcome); 0, refusal code, balance (nothing written); -1, 0, 0
-- (the id was used with another gift or count: nothing written).
-- A room's events go out as one PUBLISH: a line "@epoch", then one event per line.
--#include room
--#include partition
local fmt = string.format
local match = string.match
local sub_, byte = string.sub, string.byte
local now = ARGV[1]
local ttl = ARGV[2]
local window = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
local day = ARGV[5]
local month = string.sub(day, 1, 6)
local txcap = tonumber(ARGV[6])
local txttl = ARGV[7]
local histttl = ARGV[8]
local t = redis.call('TIME')
local rnow = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rnow_s = fmt('%d', rnow)
local due_s = fmt('%d', rnow + window)

-- Every string key of the batch, read at once. Per send j (its ARGV from 12 j - 3): its six
-- keys (idem, bal, limits, seq, totals, combo) as indexes into keys, at kx[6 j - 5 .. 6 j].
-- Arrays whose size is known are made at that size ({unpack(ARGV, 1, n)}, then overwritten):
-- a table grown one element at a time is rebuilt at every power of two.
local ns = (#ARGV - 8) / 12
local keys, slot, dirty = {unpack(ARGV, 1, 6 * ns)}, {}, {unpack(ARGV, 1, 6 * ns)}
local kx = {unpack(ARGV, 1, 6 * ns)}
local nk = 0
local function want(k)
  local n = slot[k]
  if not n then
    nk = nk + 1
    n = nk
    keys[n] = k
    slot[k] = n
    dirty[n] = false
  end
  return n
end
for j = 1, ns do
  local i, x = 12 * j - 3, 6 * j - 6
  local pre, sub = ARGV[i], ARGV[i + 1]
  local rpre = 'giftd:{r:' .. ARGV[i + 6] .. '}:'
  kx[x + 1] = want(pre .. 'idem:' .. ARGV[i + 2] .. ':' .. sub)
  kx[x + 2] = want(pre .. 'bal:' .. sub)
  kx[x + 3] = want(pre .. 'limits:' .. sub)
  kx[x + 4] = want(rpre .. 'seq')
  kx[x + 5] = want(rpre .. 'totals')
  kx[x + 6] = want(rpre .. 'combos:' .. sub)
end
-- val[n] is key n's value: a string, or false once deleted. dirty[n]: write it back.
local val = redis.call('MGET', unpack(keys, 1, nk))

local out = {unpack(ARGV, 1, 3 * ns)}
local no = 0
-- Rooms of the batch, by name: index into the room arrays.
local rooms, rpre, rseq, repoch, rtot, rev, rlb, rlbn = {}, {}, {}, {}, {}, {}, {}, {}
local nr = 0
-- Transactions, by user (its list key): {key, refresh expiry, entries...} (part_tx_gift).
local utx, utxlist = {}, {}
-- Pending earnings, by partition prefix: index into pkey/plog; plog[p] lists its rows.
local parts, pkey, plog = {}, {}, {}
local np = 0

for j = 1, ns do
  local i, x = 12 * j - 3, 6 * j - 6
  local kidem, kbal, klim, kseq, ktot, kc = kx[x + 1], kx[x + 2], kx[x + 3], kx[x + 4],
    kx[x + 5], kx[x + 6]
  local sub, digest = ARGV[i + 1], ARGV[i + 3]
  local rec = val[kidem]
  if rec then
    local d, bal, seq = match(rec, '^([^|]*)|([^|]*)|([^|]*)')
    if d ~= digest then
      out[no + 1] = -1; out[no + 2] = 0; out[no + 3] = 0
    else
      out[no + 1] = 2; out[no + 2] = tonumber(bal) or 0; out[no + 3] = tonumber(seq) or 0
    end
    no = no + 3
  else
    -- '+ 0' converts once where tonumber converts twice; these texts are all numbers.
    local cost = ARGV[i + 4] + 0
    local bal = (val[kbal] or 0) + 0
    local sd, sm, dcap, mcap, lday, fits = part_budget(val[klim], day, month, cost)
    if not fits then
      out[no + 1] = 0; out[no + 2] = 'budget_exceeded'; out[no + 3] = bal
      no = no + 3
    elseif bal < cost then
      out[no + 1] = 0; out[no + 2] = 'insufficient_funds'; out[no + 3] = bal
      no = no + 3
    else
      -- Writes: the sender's side.
      local nb = fmt('%d', bal - cost)
      val[kbal] = nb
      dirty[kbal] = true
      val[klim] = day .. ' ' .. fmt('%d', sd + cost) .. ' ' .. month .. ' ' ..
        fmt('%d', sm + cost) .. ' ' .. dcap .. ' ' .. mcap
      dirty[klim] = true
      local room, count, cost_s, dia = ARGV[i + 6], ARGV[i + 7], ARGV[i + 4], ARGV[i + 8]
      local ga = ARGV[i + 11]
      local gl = #ga
      local gid, streak, anon = sub_(ga, 1, gl - 4), byte(ga, gl - 2) == 49, byte(ga, gl) == 49
      local cnt, dian = count + 0, dia + 0
      local cgid = anon and gid .. '*' or gid
      local p = parts[ARGV[i]]
      if not p then
        np = np + 1
        p = np
        parts[ARGV[i]] = p
        pkey[p] = ARGV[i] .. 'pendlog'
        plog[p] = {}
      end
      local pl = plog[p]
      pl[#pl + 1] = part_pending_row(ARGV[i + 5], room, gid, count, cost_s, dia, now)
      -- The room's side: the sender's combo, then the gift event.
      local r = rooms[room]
      if not r then
        nr = nr + 1
        r = nr
        rooms[room] = r
        rpre[r] = 'giftd:{r:' .. room .. '}:'
        rseq[r], repoch[r] = room_seq_parse(val[kseq])
        local g, c, d, goal = match(val[ktot] or '', '^(%d+) (%d+) (%d+)(.*)$')
        rtot[r] = {(g or 0) + 0, (c or 0) + 0, (d or 0) + 0, kseq, ktot,
          goal and goal ~= '' and room_goal_parse(goal) or nil}
        rev[r] = {}
        rlb[r] = {}
        rlbn[r] = {}
      end
      local ev = rev[r]
      local combo = 'null'
      local continues = false
      local state = val[kc]
      if state then
        local g, n, total, due, at = match(state, '^([^\31]*)\31(%d+)\31(%d+)\31(%d+)\31()')
        if streak and g == cgid and rnow <= due + 0 then
          continues = true
          n = fmt('%d', n + 1)
          val[kc] = g .. '\31' .. n .. '\31' .. fmt('%d', total + cnt) .. '\31' ..
            due_s .. '\31' .. sub_(state, at)
          combo = '{"count":' .. n .. '}'
        else
          rseq[r] = rseq[r] + 1
          ev[#ev + 1] = '{"type":"combo_end","room":"' .. room .. '","seq":' .. fmt('%d', rseq[r]) ..
            ',' .. string.sub(state, at) .. ',"combo":{"count":' .. n .. '},"total_count":' ..
            total .. ',"ts_ms":' .. rnow_s .. '}'
          val[kc] = false
          if not streak then
            redis.call('ZREM', rpre[r] .. 'combodue', sub)
          end
        end
        dirty[kc] = true
      end
      local fg = ARGV[i + 10]
      if streak and not continues then
        val[kc] = cgid .. '\31' .. '1\31' .. count .. '\31' .. due_s .. '\31' .. fg
        dirty[kc] = true
        redis.call('ZADD', rpre[r] .. 'combodue', due_s, sub)
        combo = '{"count":1}'
      end
      local tot = rtot[r]
      tot[1] = tot[1] + cnt
      tot[2] = tot[2] + cost
      tot[3] = tot[3] + dian
      -- The sender's coins in this room's session: the leaderboard's score. Its first send in
      -- the batch takes it from ZINCRBY; later ones add in Lua, and the rest goes in at the end.
      local sender_coins
      if not anon then
        local lb = rlb[r]
        local e = lb[sub]
        if not e then
          local got = redis.call('ZINCRBY', rpre[r] .. 'lb', cost_s, sub)
          if got == cost_s then
            local names = rlbn[r]
            names[#names + 1] = sub
            names[#names + 1] = ARGV[i + 9]
          end
          e = {got + 0, 0}
          lb[sub] = e
          lb[#lb + 1] = sub
        else
          e[1] = e[1] + cost
          e[2] = e[2] + cost
        end
        sender_coins = e[1]
      end
      rseq[r] = rseq[r] + 1
      local seq = rseq[r]
      local seq_s = fmt('%d', seq)
      ev[#ev + 1] = '{"type":"gift","room":"' .. room .. '","seq":' .. seq_s .. ',"id":"' ..
        ARGV[i + 2] .. '",' .. fg .. ',"count":' .. count .. ',"combo":' .. combo ..
        ',"totals":{"room_coins":' .. fmt('%d', tot[2]) .. ',"sender_coins":' ..
        (sender_coins and fmt('%d', sender_coins) or 'null') .. '},"ts_ms":' .. now .. '}'
      -- The room's goal: its progress, and goal_reached (numbered) the first time it is met.
      local reached = room_goal_step(tot[6], room, gid, cost, cnt, seq + 1, now)
      if reached then
        rseq[r] = rseq[r] + 1
        ev[#ev + 1] = reached
      end
      local rec = digest .. '|' .. nb .. '|' .. seq_s
      val[kidem] = rec
      redis.call('SET', keys[kidem], rec, 'EX', ttl)
      part_tx_gift(utx, utxlist, ARGV[i] .. 'tx:' .. sub, lday ~= day, now, cost_s, nb,
        ARGV[i + 2], room, gid, count, anon and '1' or '0')
      out[no + 1] = 1; out[no + 2] = bal - cost; out[no + 3] = seq
      no = no + 3
    end
  end
end

-- Once per user: the transactions (oldest pushed first, so the newest ends up at the head).
part_tx_push(utxlist, txcap, txttl)

-- Once per partition: the creators' pending earnings, appended to its log.
for p = 1, np do
  redis.call('RPUSH', pkey[p], unpack(plog[p]))
end

-- Once per room: seq, totals, leaderboard, history, and one PUBLISH of its events.
for r = 1, nr do
  local tot, ev = rtot[r], rev[r]
  val[tot[4]] = fmt('%d', rseq[r]) .. ' ' .. repoch[r]
  dirty[tot[4]] = true
  val[tot[5]] = room_totals_text(tot[1], tot[2], tot[3], tot[6])
  dirty[tot[5]] = true
  -- The leaderboard: what later sends of the batch added; a sender's name is recorded when
  -- the sender enters the session's leaderboard.
  local pre, lb, names = rpre[r], rlb[r], rlbn[r]
  for k = 1, #lb do
    local e = lb[lb[k]]
    if e[2] > 0 then
      redis.call('ZINCRBY', pre .. 'lb', fmt('%d', e[2]), lb[k])
    end
  end
  if #names > 0 then
    redis.call('HSET', pre .. 'lbnames', unpack(names))
  end
  room_hist_push(pre .. 'hist', ev, cap, histttl)
  redis.call('PUBLISH', pre .. 'ch',
    '@' .. repoch[r] .. '\n' .. (#ev == 1 and ev[1] or table.concat(ev, '\n')))
end

-- The string keys written, at once.
local mset, del = {}, {}
local nm = 0
for n = 1, nk do
  if dirty[n] then
    if val[n] then
      mset[nm + 1] = keys[n]
      mset[nm + 2] = val[n]
      nm = nm + 2
    else
      del[#del + 1] = keys[n]
    end
  end
end
if nm > 0 then
  redis.call('MSET', unpack(mset, 1, nm))
end
if #del > 0 then
  redis.call('DEL', unpack(del))
end
return out
