-- settle_begin: step 1 of settling a partition. Under the partition's flush lease, fold the
-- pending earnings log into the pending hash, then move the pending earnings to `settling`
-- under a new batch id, or hand back the batch a crash left.
-- KEYS: 1 pending (hash: field "creator US room US gift" -> "count coins diamonds first_ms
--       last_ms"), 2 settling (hash), 3 settling batch id, 4 batch counter, 5 flush lease,
--       6 pending log (list, gift.lua/debit.lua append: "field RS count coins diamonds ts_ms")
-- ARGV: 1 node id, 2 lease ms ('0': the node is leaving, give the lease up), 3 partition
--       number, 4 now_ms
-- Returns {0} when another node holds the lease; {1} when there is nothing to settle;
-- {2, batch, seq, field1, value1, ...}: the batch to settle (new, or the one left by a crash,
-- with its old id). Batch ids are "p<partition>-<seq>-<ms>"; seq rises by one per batch of
-- the partition, and a batch only begins once the one before it has ended.
-- A partition with nothing to settle is not written to (no lease taken or renewed), except
-- that the caller's own lease on it is given up: the partition is idle, and a node whose
-- debits land in it next should not wait for the lease to lapse.
local holder = redis.call('GET', KEYS[5])
if holder and holder ~= ARGV[1] then
  return {0}
end
-- The log is folded on every visit, also while a batch is settling, so that it stays short
-- (one visit's worth of rows) even when the sink is down: the hash grows by distinct
-- creator, room and gift, not by gift.
local log = redis.call('LRANGE', KEYS[6], 0, -1)
if #log > 0 then
  local rows, order = {}, {}
  local find, sub, match = string.find, string.sub, string.match
  for _, e in ipairs(log) do
    -- Split at the RS without a pattern (a leading .* would try every split point).
    local rs = find(e, '\30', 1, true)
    local field = sub(e, 1, rs - 1)
    local n, c, d, ts = match(e, '^(%d+) (%d+) (%d+) (%d+)$', rs + 1)
    local row = rows[field]
    if row then
      row[1] = row[1] + n
      row[2] = row[2] + c
      row[3] = row[3] + d
      row[5] = ts
    else
      rows[field] = {n + 0, c + 0, d + 0, ts, ts}
      order[#order + 1] = field
    end
  end
  local cur = redis.call('HMGET', KEYS[1], unpack(order))
  local set = {}
  for k, field in ipairs(order) do
    local row = rows[field]
    local first = row[4]
    if cur[k] then
      local n, c, d, f = string.match(cur[k], '^(%d+) (%d+) (%d+) (%d+) %d+$')
      row[1], row[2], row[3], first = row[1] + n, row[2] + c, row[3] + d, f
    end
    set[#set + 1] = field
    set[#set + 1] = string.format('%d %d %d ', row[1], row[2], row[3]) .. first .. ' ' .. row[5]
  end
  redis.call('HSET', KEYS[1], unpack(set))
  redis.call('DEL', KEYS[6])
end
local settling = redis.call('EXISTS', KEYS[2]) == 1
local work = settling or redis.call('EXISTS', KEYS[1]) == 1
if ARGV[2] == '0' then
  if holder then
    redis.call('DEL', KEYS[5])
  end
elseif work then
  redis.call('SET', KEYS[5], ARGV[1], 'PX', ARGV[2])
end
local batch = redis.call('GET', KEYS[3])
local function new_batch()
  local seq = redis.call('INCR', KEYS[4])
  local id = 'p' .. ARGV[3] .. '-' .. seq .. '-' .. ARGV[4]
  redis.call('SET', KEYS[3], id)
  return id
end
local function reply(id)
  local out = {2, id, tonumber(string.match(id, '^p%d+%-(%d+)%-'))}
  local rows = redis.call('HGETALL', KEYS[2])
  for i = 1, #rows do
    out[#out + 1] = rows[i]
  end
  return out
end
if settling then
  if not batch then
    -- Never written apart from settling; settle what is there under a fresh id.
    batch = new_batch()
  end
  return reply(batch)
end
if batch then
  redis.call('DEL', KEYS[3])
end
if not work then
  if holder then
    redis.call('DEL', KEYS[5])
  end
  return {1}
end
redis.call('RENAME', KEYS[1], KEYS[2])
return reply(new_batch())
