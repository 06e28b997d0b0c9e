-- debit: the first step of a gift on a Redis Cluster, on the sender's partition: each send of
-- the batch is charged (or refused) on its own, exactly as gift.lua charges it, and what the
-- room must show is left in the partition's outbox; publish.lua (on the room's slot) then
-- numbers and broadcasts it, and outbox_done.lua clears the entry. On one Redis gift.lua does
-- both steps in one script. Every key is declared, so a slot being migrated answers ASK or
-- TRYAGAIN before anything runs rather than a half-moved partition being read.
-- KEYS: 1 pending earnings log (list), 2 outbox (hash), then 4 per send: idem, bal, limits, tx
-- ARGV: 1 now_ms, 2 idempotency ttl (s), 3 UTC day (YYYYMMDD), 4 transactions kept per user,
--       5 their ttl (ms), then 11 per send: sub, id, digest (gift:count), cost, creator, room,
--       count, diamonds, sender name as JSON text, '"from":...,"gift":{...}' text,
--       gift id .. '|' .. (1 streakable | 0) .. '|' .. (1 anonymous | 0)
-- The outbox entry of a send (field "sub|id") is its publish arguments, US separated:
-- ts_ms, room, cost, count, diamonds, name, from+gift, gift|s|a, digest, balance after.
-- Returns 3 values per send: 1, balance, 0 (charged now: publish it); 2, balance, seq (a retry
-- of a send already published); 3, balance, 0 (a retry of a send charged but maybe not yet
-- published: publish it, publish.lua answers its seq once); 0, refusal code, balance (nothing
-- written); -1, 0, 0 (the id was used with another gift or count: nothing written).
--#include partition
local fmt = string.format
local match = string.match
local now, ttl, day = ARGV[1], ARGV[2], ARGV[3]
local month = string.sub(day, 1, 6)
local txcap, txttl = tonumber(ARGV[4]), ARGV[5]
local out, rows, utx, utxlist = {}, {}, {}, {}
local no, ns = 0, 0
for i = 6, #ARGV, 11 do
  local k = 2 + 4 * ns
  ns = ns + 1
  local kidem, kbal, klim, ktx = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4]
  local sub, id, digest = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local rec = redis.call('GET', kidem)
  if rec then
    local d, bal, seq = match(rec, '^([^|]*)|([^|]*)|([^|]*)')
    if d ~= digest then
      out[no + 1] = -1; out[no + 2] = 0; out[no + 3] = 0
    elseif tonumber(seq) and tonumber(seq) > 0 then
      out[no + 1] = 2; out[no + 2] = tonumber(bal) or 0; out[no + 3] = tonumber(seq)
    else
      out[no + 1] = 3; out[no + 2] = tonumber(bal) or 0; out[no + 3] = 0
    end
  else
    local cost = tonumber(ARGV[i + 3])
    local bal = tonumber(redis.call('GET', kbal) or '0')
    local sd, sm, dcap, mcap, lday, fits = part_budget(redis.call('GET', klim), day, month, cost)
    if not fits then
      out[no + 1] = 0; out[no + 2] = 'budget_exceeded'; out[no + 3] = bal
    elseif bal < cost then
      out[no + 1] = 0; out[no + 2] = 'insufficient_funds'; out[no + 3] = bal
    else
      local nb = fmt('%d', bal - cost)
      redis.call('SET', kbal, nb)
      redis.call('SET', klim, day .. ' ' .. fmt('%d', sd + cost) .. ' ' .. month .. ' ' ..
        fmt('%d', sm + cost) .. ' ' .. dcap .. ' ' .. mcap)
      redis.call('SET', kidem, digest .. '|' .. nb .. '|0', 'EX', ttl)
      local creator, room, count, dia = ARGV[i + 4], ARGV[i + 5], ARGV[i + 6], ARGV[i + 7]
      local gid, _, anon = match(ARGV[i + 10], '^([^|]*)|(.)|(.)$')
      -- The creator's pending earnings, a row of the partition's log as gift.lua writes it.
      rows[#rows + 1] = part_pending_row(creator, room, gid, count, ARGV[i + 3], dia, now)
      redis.call('HSET', KEYS[2], sub .. '|' .. id, now .. '\31' .. room .. '\31' ..
        ARGV[i + 3] .. '\31' .. count .. '\31' .. dia .. '\31' .. ARGV[i + 8] .. '\31' ..
        ARGV[i + 9] .. '\31' .. ARGV[i + 10] .. '\31' .. digest .. '\31' .. nb)
      part_tx_gift(utx, utxlist, ktx, lday ~= day, now, ARGV[i + 3], nb, id, room, gid, count,
        anon)
      out[no + 1] = 1; out[no + 2] = bal - cost; out[no + 3] = 0
    end
  end
  no = no + 3
end
part_tx_push(utxlist, txcap, txttl)
if #rows > 0 then
  redis.call('RPUSH', KEYS[1], unpack(rows))
end
return out
