-- debit: charge one gift send, atomically, on the sender's partition (one hash tag).
-- Every check happens before the first write: Redis has no rollback.
-- KEYS: 1 balance, 2 idempotency record of (sub, id), 3 daily budget, 4 spent today,
--       5 pending earnings (hash), 6 outbox (sorted set of publish payloads by time)
-- ARGV: 1 digest of the request (gift and count), 2 cost in coins, 3 idempotency ttl (s),
--       4 pending field (creator, room, gift), 5 count, 6 diamonds, 7 now_ms,
--       8 publish payload (what the outbox keeps until the event is broadcast)
-- Returns {1, balance} committed now; {2, balance, payload} a retry of a committed send
-- (its first outcome); {0, code, balance} refused, nothing written; {-1} id reused with
-- other parameters.
local rec = redis.call('GET', KEYS[2])
if rec then
  local digest, bal, payload = string.match(rec, '^([^|]*)|([^|]*)|(.*)$')
  if digest ~= ARGV[1] then
    return {-1}
  end
  return {2, tonumber(bal), payload}
end
local cost = tonumber(ARGV[2])
local bal = tonumber(redis.call('GET', KEYS[1]) or '0')
local spent = tonumber(redis.call('GET', KEYS[4]) or '0')
local cap = redis.call('GET', KEYS[3])
if cap and spent + cost > tonumber(cap) then
  return {0, 'budget_exceeded', bal}
end
if bal < cost then
  return {0, 'insufficient_funds', bal}
end
-- Writes.
local nb = redis.call('DECRBY', KEYS[1], cost)
redis.call('INCRBY', KEYS[4], cost)
redis.call('EXPIRE', KEYS[4], 172800)
local now = ARGV[7]
local cur = redis.call('HGET', KEYS[5], ARGV[4])
if cur then
  local n, c, d, first = string.match(cur, '^(%d+) (%d+) (%d+) (%d+) %d+$')
  redis.call('HSET', KEYS[5], ARGV[4], (tonumber(n) + tonumber(ARGV[5])) .. ' ' ..
    (tonumber(c) + cost) .. ' ' .. (tonumber(d) + tonumber(ARGV[6])) .. ' ' .. first .. ' ' .. now)
else
  redis.call('HSET', KEYS[5], ARGV[4], ARGV[5] .. ' ' .. cost .. ' ' .. ARGV[6] .. ' ' .. now ..
    ' ' .. now)
end
redis.call('SET', KEYS[2], ARGV[1] .. '|' .. nb .. '|' .. ARGV[8], 'EX', ARGV[3])
redis.call('ZADD', KEYS[6], now, ARGV[8])
return {1, nb}
