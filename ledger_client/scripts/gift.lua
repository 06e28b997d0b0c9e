-- gift: charge and broadcast a batch of gift sends, each on its own, in one atomic step.
-- For each send, in order: the idempotency record of (sub, id) answers a retry with the first
-- outcome; then budget and balance are checked before anything is written (Redis has no
-- rollback); then the debit, the day's spending, the idempotency record, the creator's pending
-- earnings, the room's seq, combo, totals, leaderboard, history and broadcast. Sends of one
-- batch see each other's writes, so a duplicate inside a batch is answered as a retry.
-- The work shared by the sends of a room (totals, leaderboard, history, PUBLISH) or a
-- partition (pending earnings) is done once per batch. Time for combos is Redis's clock.
-- Keys are derived from the prefixes the caller passes (ledger_client/keys.c names them).
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
local cap = tonumber(ARGV[4]) - 1
local day = ARGV[5]
local t = redis.call('TIME')
local rnow = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local out = {}
local rooms, roomlist = {}, {}
local pend, pendlist = {}, {}

local function room_of(name)
  local r = rooms[name]
  if not r then
    local pre = 'giftd:{r:' .. name .. '}:'
    r = {name = name, pre = pre, seq = tonumber(redis.call('GET', pre .. 'seq') or '0'),
         events = {}, gifts = 0, coins = 0, diamonds = 0, lb = {}, lborder = {}, names = {}}
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

for i = 6, #ARGV, 12 do
  local pre, sub, id, digest = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local cost = tonumber(ARGV[i + 4])
  local kidem = pre .. 'idem:' .. id .. ':' .. sub
  local rec = redis.call('GET', kidem)
  if rec then
    local d, bal, seq = string.match(rec, '^([^|]*)|([^|]*)|([^|]*)')
    if d ~= digest then
      out[#out + 1] = -1; out[#out + 1] = 0; out[#out + 1] = 0
    else
      out[#out + 1] = 2; out[#out + 1] = tonumber(bal) or 0; out[#out + 1] = tonumber(seq) or 0
    end
  else
    local kbal, kspent = pre .. 'bal:' .. sub, pre .. 'spent:' .. day .. ':' .. sub
    local u = redis.call('MGET', kbal, pre .. 'budget:' .. sub, kspent)
    local bal = tonumber(u[1] or '0')
    local spent = tonumber(u[3] or '0')
    if u[2] and spent + cost > tonumber(u[2]) then
      out[#out + 1] = 0; out[#out + 1] = 'budget_exceeded'; out[#out + 1] = bal
    elseif bal < cost then
      out[#out + 1] = 0; out[#out + 1] = 'insufficient_funds'; out[#out + 1] = bal
    else
      -- Writes: the sender's side.
      local nb = redis.call('DECRBY', kbal, cost)
      redis.call('SET', kspent, spent + cost, 'EX', 172800)
      local creator, room, count, dia = ARGV[i + 5], ARGV[i + 6], ARGV[i + 7], ARGV[i + 8]
      local field = creator .. '\31' .. room .. '\31' .. string.match(ARGV[i + 11], '^[^|]*')
      local pk = pre .. 'pending'
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
      -- The room's side: combo, then the gift event.
      local r = room_of(room)
      local name, fg = ARGV[i + 9], ARGV[i + 10]
      local gid, streak = string.match(ARGV[i + 11], '^([^|]*)|(.)$')
      local kcombos, kdue = r.pre .. 'combos', r.pre .. 'combodue'
      local combo = 'null'
      local state = redis.call('HGET', kcombos, sub)
      local continues = false
      if state then
        local g, n, total, last, ofg =
          string.match(state, '^([^\31]*)\31(%d+)\31(%d+)\31(%d+)\31(.*)$')
        if streak == '1' and g == gid and rnow - tonumber(last) <= window then
          continues = true
          n = tonumber(n) + 1
          redis.call('HSET', kcombos, sub, g .. '\31' .. n .. '\31' .. (tonumber(total) + tonumber(count)) ..
            '\31' .. rnow .. '\31' .. ofg)
          combo = '{"count":' .. n .. '}'
        else
          emit(r, '{"type":"combo_end","room":"' .. room .. '","seq":', ',' .. ofg ..
            ',"combo":{"count":' .. n .. '},"total_count":' .. total .. ',"ts_ms":' .. rnow .. '}')
          if streak ~= '1' then
            redis.call('HDEL', kcombos, sub)
            redis.call('ZREM', kdue, sub)
          end
        end
      end
      if streak == '1' then
        if not continues then
          redis.call('HSET', kcombos, sub, gid .. '\31' .. '1\31' .. count .. '\31' .. rnow .. '\31' .. fg)
          combo = '{"count":1}'
        end
        redis.call('ZADD', kdue, rnow + window, sub)
      end
      local seq = emit(r, '{"type":"gift","room":"' .. room .. '","seq":', ',"id":"' .. id .. '",' ..
        fg .. ',"count":' .. count .. ',"combo":' .. combo .. ',"ts_ms":' .. now .. '}')
      redis.call('SET', kidem, digest .. '|' .. nb .. '|' .. seq, 'EX', ttl)
      r.gifts = r.gifts + tonumber(count)
      r.coins = r.coins + cost
      r.diamonds = r.diamonds + tonumber(dia)
      if not r.lb[sub] then
        r.lb[sub] = 0
        r.lborder[#r.lborder + 1] = sub
        r.names[#r.names + 1] = sub
        r.names[#r.names + 1] = name -- r.names[2k] is the name of r.lborder[k]
      end
      r.lb[sub] = r.lb[sub] + cost
      out[#out + 1] = 1; out[#out + 1] = nb; out[#out + 1] = seq
    end
  end
end

-- Once per partition: the creators' pending earnings ("count coins diamonds first last").
for _, p in ipairs(pendlist) do
  for _, field in ipairs(p.order) do
    local row = p.rows[field]
    local cur = redis.call('HGET', p.key, field)
    if cur then
      local n, c, d, first = string.match(cur, '^(%d+) (%d+) (%d+) (%d+) %d+$')
      redis.call('HSET', p.key, field, (tonumber(n) + row[1]) .. ' ' .. (tonumber(c) + row[2]) ..
        ' ' .. (tonumber(d) + row[3]) .. ' ' .. first .. ' ' .. now)
    else
      redis.call('HSET', p.key, field, row[1] .. ' ' .. row[2] .. ' ' .. row[3] .. ' ' .. now ..
        ' ' .. now)
    end
  end
end

-- Once per room: seq, totals, leaderboard, history, and one PUBLISH of its events.
for _, r in ipairs(roomlist) do
  if #r.events > 0 then
    redis.call('SET', r.pre .. 'seq', r.seq)
    local kt = r.pre .. 'totals'
    redis.call('HINCRBY', kt, 'gifts', r.gifts)
    redis.call('HINCRBY', kt, 'coins', r.coins)
    redis.call('HINCRBY', kt, 'diamonds', r.diamonds)
    -- A sender's name is recorded when the sender enters the session's leaderboard.
    local klb, names = r.pre .. 'lb', {}
    for k, sub in ipairs(r.lborder) do
      if tonumber(redis.call('ZINCRBY', klb, r.lb[sub], sub)) == r.lb[sub] then
        names[#names + 1] = sub
        names[#names + 1] = r.names[2 * k]
      end
    end
    if #names > 0 then
      redis.call('HSET', r.pre .. 'lbnames', unpack(names))
    end
    redis.call('HSET', r.pre .. 'state', 'lbdirty', '1')
    local kh = r.pre .. 'hist'
    if redis.call('LPUSH', kh, unpack(r.events)) > cap + 1 then
      redis.call('LTRIM', kh, 0, cap)
    end
    redis.call('PUBLISH', 'giftd:room:' .. r.name, table.concat(r.events, '\n'))
  end
end
return out
