-- lib/partition: what the scripts of a user's partition share (`--#include partition`).

-- A row of a partition's pending earnings log (a list; settle_begin.lua folds it into the
-- pending hash, summing the rows of a creator, room and gift): "creator US room US gift RS
-- count coins diamonds ts_ms", all given as text. A gift reads nothing there: its batch
-- appends its rows with one RPUSH per partition.
local function part_pending_row(creator, room, gift, count, coins, diamonds, now)
  return creator .. '\31' .. room .. '\31' .. gift .. '\30' .. count .. ' ' .. coins .. ' ' ..
    diamonds .. ' ' .. now
end

-- A user's spending so far against its caps: lim is the limits string ("day spent_that_day
-- month spent_that_month daily_cap monthly_cap", a cap '-' when not set; nil for none), day
-- and month today's. Returns the day's and month's spending (0 in a new day or month), both
-- caps as text, and the day of the record (nil for none), and whether cost fits both caps.
local function part_budget(lim, day, month, cost)
  local lday, sd, lmonth, sm, dcap, mcap
  if lim then
    lday, sd, lmonth, sm, dcap, mcap = string.match(lim, '^(%d+) (%d+) (%d+) (%d+) (%S+) (%S+)$')
  end
  sd = (lday == day and sd + 0) or 0
  sm = (lmonth == month and sm + 0) or 0
  dcap, mcap = dcap or '-', mcap or '-'
  local dc, mc = dcap ~= '-' and dcap + 0, mcap ~= '-' and mcap + 0
  return sd, sm, dcap, mcap, lday, not ((dc and sd + cost > dc) or (mc and sm + cost > mc))
end

-- Records a charged gift in its sender's transactions (pushed by part_tx_push): txs maps a
-- user's list key to {key, refresh its expiry, entries...}, order lists them as first seen.
local function part_tx_gift(txs, order, key, refresh, now, cost, balance, id, room, gift, count,
                            anon)
  local tx = txs[key]
  if not tx then
    tx = {key, refresh}
    txs[key] = tx
    order[#order + 1] = tx
  end
  tx[#tx + 1] = '{"type":"gift","ts_ms":' .. now .. ',"coins":-' .. cost .. ',"balance":' ..
    balance .. ',"id":"' .. id .. '","room":"' .. room .. '","gift":"' .. gift .. '","count":' ..
    count .. ',"anonymous":' .. (anon == '1' and 'true' or 'false') .. '}'
end

-- Pushes each user's new transactions (txs: {list key, refresh its expiry, entries oldest
-- first...}) onto the user's list, newest at the head, trimmed back to txcap once 64 over;
-- the list's expiry (txttl ms) is pushed on when asked.
local function part_tx_push(txs, txcap, txttl)
  for _, tx in ipairs(txs) do
    if redis.call('LPUSH', tx[1], unpack(tx, 3)) > txcap + 64 then
      redis.call('LTRIM', tx[1], 0, txcap - 1)
    end
    if tx[2] then
      redis.call('PEXPIRE', tx[1], txttl)
    end
  end
end
