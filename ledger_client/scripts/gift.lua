-- gift: charge and broadcast a batch of gift sends, each on its own, in one atomic step.
-- For each send, in order: the idempotency record of (sub, id) answers a retry with the first
-- outcome; then budget and balance are checked before anything is written (Redis has no
-- rollback); then the debit, the day's spending, the idempotency record, the creator's pending
-- earnings, the room's seq, combo, totals, leaderboard, history and broadcast. Sends of one
-- batch see each other's writes, so a duplicate inside a batch is answered as a retry.
-- Every redis.call costs about a microsecond and a half whatever it does, so the batch reads
-- every string key it needs in one MGET, works on them in Lua, and writes them back in one
-- MSET (and one SET ... EX per key that expires); the work shared by the sends of a room
-- (leaderboard, history, PUBLISH) or of a partition (pending earnings) is done once per batch.
-- Time for combos is Redis's clock. Keys are derived from the prefixes the caller passes
-- (ledger_client/keys.c names them); a room's keys share its hash tag.
-- Room keys: seq (string), totals (string "gifts coins diamonds"), combos:<sub> (string
-- "gift US count US total US deadline_ms US from+gift JSON"), combodue (zset: a combo's first
-- deadline; combo.lua moves it on while the combo goes on), lb, lbnames, hist, the channel.
-- ARGV: 1 now_ms (node clock: ts_ms of the events, pending windows), 2 idempotency ttl (s),
--       3 combo window ms, 4 history cap, 5 UTC day (YYYYMMDD), then 12 per send:
--       partition prefix, sub, id, digest (gift:count), cost, creator, room, count,
--       diamonds, sender name as JSON text, '"from":{...},"gift":{...}' text,
--       gift id .. ('|1' streakable | '|0')
-- Returns 3 values per send: 1, balance, seq (committed now); 2, balance, seq (a retry of a
-- committed send: its first outcome); 0, refusal code, balance (nothing written); -1, 0, 0
-- (the id was used with another gift or count: nothing written).
local now = ARGV[1]
local ttl = ARGV[2]
local window = tonumber(ARGV[3])
local cap = tonumber(ARGV[4])
local day = ARGV[5]
local t = redis.call('TIME')
local rnow = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

-- Every string key of the batch, read at once.
local keys, seen = {}, {}
local function want(k)
  if not seen[k] then
    seen[k] = true
    keys[#keys + 1] = k
  end
  return k
end
local send = {}
for i = 6, #ARGV, 12 do
  local pre, sub, room = ARGV[i], ARGV[i + 1], ARGV[i + 6]
  local rpre = 'giftd:{r:' .. room .. '}:'
  send[#send + 1] = {
    i = i, pre = pre, sub = sub, rpre = rpre,
    kidem = want(pre .. 'idem:' .. ARGV[i + 2] .. ':' .. sub),
    kbal = want(pre .. 'bal:' .. sub),
    kbud = want(pre .. 'budget:' .. sub),
    kspent = want(pre .. 'spent:' .. day .. ':' .. sub),
    kseq = want(rpre .. 'seq'),
    ktot = want(rpre .. 'totals'),
    kcombo = want(rpre .. 'combos:' .. sub),
  }
end
local val = {}
local got = redis.call('MGET', unpack(keys))
for k = 1, #keys do
  val[keys[k]] = got[k]
end
local dirty, expiring = {}, {}

local out = {}
local rooms, roomlist = {}, {}
local pend, pendlist = {}, {}

local function room_of(name, s)
  local r = rooms[name]
  if not r then
    r = {name = name, pre = s.rpre, kseq = s.kseq, ktot = s.ktot,
         seq = tonumber(val[s.kseq] or '0'), events = {}, lb = {}, lborder = {}, names = {}}
    local g, c, d = string.match(val[s.ktot] or '', '^(%d+) (%d+) (%d+)$')
    r.gifts, r.coins, r.diamonds = tonumber(g or '0'), tonumber(c or '0'), tonumber(d or '0')
    rooms[name] = r
    roomlist[#roomlist + 1] = r
  end
  return r
end

local function emit(r, head, tail)
  r.seq = r.seq + 1
  r.events[#r.events + 1] = head .. r.seq .. tail
  return r.seq
end

for _, s in ipairs(send) do
  local i, sub = s.i, s.sub
  local digest, cost = ARGV[i + 3], tonumber(ARGV[i + 4])
  local rec = val[s.kidem]
  if rec then
    local d, bal, seq = string.match(rec, '^([^|]*)|([^|]*)|([^|]*)')
    if d ~= digest then
      out[#out + 1] = -1; out[#out + 1] = 0; out[#out + 1] = 0
    else
      out[#out + 1] = 2; out[#out + 1] = tonumber(bal) or 0; out[#out + 1] = tonumber(seq) or 0
    end
  else
    local bal = tonumber(val[s.kbal] or '0')
    local spent = tonumber(val[s.kspent] or '0')
    local budget = val[s.kbud]
    if budget and spent + cost > tonumber(budget) then
      out[#out + 1] = 0; out[#out + 1] = 'budget_exceeded'; out[#out + 1] = bal
    elseif bal < cost then
      out[#out + 1] = 0; out[#out + 1] = 'insufficient_funds'; out[#out + 1] = bal
    else
      -- Writes: the sender's side.
      local nb = bal - cost
      val[s.kbal] = nb
      dirty[s.kbal] = true
      val[s.kspent] = spent + cost
      expiring[s.kspent] = 172800
      local creator, room, count, dia = ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
      local gid, streak = string.match(ARGV[i + 11], '^([^|]*)|(.)$')
      local field = creator .. '\31' .. room .. '\31' .. gid
      local pk = s.pre .. 'pending'
      local p = pend[pk]
      if not p then
        p = {key = pk, rows = {}, order = {}}
        pend[pk] = p
        pendlist[#pendlist + 1] = p
      end
      local row = p.rows[field]
      if not row then
        row = {0, 0, 0}
        p.rows[field] = row
        p.order[#p.order + 1] = field
      end
      row[1] = row[1] + tonumber(count)
      row[2] = row[2] + cost
      row[3] = row[3] + tonumber(dia)
      -- The room's side: the sender's combo, then the gift event.
      local r = room_of(room, s)
      local name, fg = ARGV[i + 9], ARGV[i + 10]
      local combo = 'null'
      local continues = false
      local state = val[s.kcombo]
      if state then
        local g, n, total, due, ofg =
          string.match(state, '^([^\31]*)\31(%d+)\31(%d+)\31(%d+)\31(.*)$')
        if streak == '1' and g == gid and rnow <= tonumber(due) then
          continues = true
          n = tonumber(n) + 1
          val[s.kcombo] = g .. '\31' .. n .. '\31' .. (tonumber(total) + tonumber(count)) ..
            '\31' .. (rnow + window) .. '\31' .. ofg
          combo = '{"count":' .. n .. '}'
        else
          emit(r, '{"type":"combo_end","room":"' .. room .. '","seq":', ',' .. ofg ..
            ',"combo":{"count":' .. n .. '},"total_count":' .. total .. ',"ts_ms":' .. rnow .. '}')
          val[s.kcombo] = false
          if streak ~= '1' then
            redis.call('ZREM', r.pre .. 'combodue', sub)
          end
        end
        dirty[s.kcombo] = true
      end
      if streak == '1' and not continues then
        val[s.kcombo] = gid .. '\31' .. '1\31' .. count .. '\31' .. (rnow + window) .. '\31' .. fg
        dirty[s.kcombo] = true
        redis.call('ZADD', r.pre .. 'combodue', rnow + window, sub)
        combo = '{"count":1}'
      end
      local seq = emit(r, '{"type":"gift","room":"' .. room .. '","seq":', ',"id":"' ..
        ARGV[i + 2] .. '",' .. fg .. ',"count":' .. count .. ',"combo":' .. combo ..
        ',"ts_ms":' .. now .. '}')
      val[s.kidem] = digest .. '|' .. nb .. '|' .. seq
      expiring[s.kidem] = ttl
      r.gifts = r.gifts + tonumber(count)
      r.coins = r.coins + cost
      r.diamonds = r.diamonds + tonumber(dia)
      if not r.lb[sub] then
        r.lb[sub] = 0
        r.lborder[#r.lborder + 1] = sub
        r.names[sub] = name
      end
      r.lb[sub] = r.lb[sub] + cost
      out[#out + 1] = 1; out[#out + 1] = nb; out[#out + 1] = seq
    end
  end
end

-- Once per partition: the creators' pending earnings ("count coins diamonds first last").
for _, p in ipairs(pendlist) do
  local cur = redis.call('HMGET', p.key, unpack(p.order))
  local set = {}
  for k, field in ipairs(p.order) do
    local row = p.rows[field]
    set[#set + 1] = field
    if cur[k] then
      local n, c, d, first = string.match(cur[k], '^(%d+) (%d+) (%d+) (%d+) %d+$')
      set[#set + 1] = (tonumber(n) + row[1]) .. ' ' .. (tonumber(c) + row[2]) .. ' ' ..
        (tonumber(d) + row[3]) .. ' ' .. first .. ' ' .. now
    else
      set[#set + 1] = row[1] .. ' ' .. row[2] .. ' ' .. row[3] .. ' ' .. now .. ' ' .. now
    end
  end
  redis.call('HSET', p.key, unpack(set))
end

-- Once per room: leaderboard, history, and one PUBLISH of its events.
for _, r in ipairs(roomlist) do
  if #r.events > 0 then
    val[r.kseq] = r.seq
    dirty[r.kseq] = true
    if #r.lborder > 0 then
      val[r.ktot] = r.gifts .. ' ' .. r.coins .. ' ' .. r.diamonds
      dirty[r.ktot] = true
    end
    -- A sender's name is recorded when the sender enters the session's leaderboard.
    local klb, names = r.pre .. 'lb', {}
    for _, sub in ipairs(r.lborder) do
      if tonumber(redis.call('ZINCRBY', klb, r.lb[sub], sub)) == r.lb[sub] then
        names[#names + 1] = sub
        names[#names + 1] = r.names[sub]
      end
    end
    if #names > 0 then
      redis.call('HSET', r.pre .. 'lbnames', unpack(names))
    end
    -- Newest first; trimmed back to the cap once it is 64 over.
    local kh = r.pre .. 'hist'
    if redis.call('LPUSH', kh, unpack(r.events)) > cap + 64 then
      redis.call('LTRIM', kh, 0, cap - 1)
    end
    redis.call('PUBLISH', 'giftd:room:' .. r.name, table.concat(r.events, '\n'))
  end
end

-- The string keys written, at once; those that expire one by one.
local mset, del = {}, {}
for _, k in ipairs(keys) do
  if dirty[k] then
    if val[k] then
      mset[#mset + 1] = k
      mset[#mset + 1] = val[k]
    else
      del[#del + 1] = k
    end
  elseif expiring[k] then
    redis.call('SET', k, val[k], 'EX', expiring[k])
  end
end
if #mset > 0 then
  redis.call('MSET', unpack(mset))
end
if #del > 0 then
  redis.call('DEL', unpack(del))
end
return out
