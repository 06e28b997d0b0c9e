-- transactions: a page of a user's transactions (recharges, reversals, gifts), newest first.
-- KEYS: 1 transactions (list of JSON texts, newest first: gift.lua, recharge.lua)
-- ARGV: 1 limit, 2 before (ts_ms: only older ones; '' for the newest), 3 cutoff (ts_ms: older
--       ones are past ledger.history_ttl_s and not shown)
-- Returns {next_before or -1, entry...}. Entries that share a ts_ms are never split across
-- pages: a page ends before them (or, when they fill it, runs past the limit to take them all),
-- so that asking for before = next_before loses none.
local limit = tonumber(ARGV[1])
local before = tonumber(ARGV[2])
local cutoff = tonumber(ARGV[3])
local all = redis.call('LRANGE', KEYS[1], 0, -1)
local out, ts = {-1}, {}
local n = 0
for _, e in ipairs(all) do
  local t = tonumber(string.match(e, '"ts_ms":(%d+)'))
  if t and t >= cutoff and (not before or t < before) then
    if n >= limit and t ~= ts[n] then
      -- More remain: cut where the timestamp changes.
      out[1] = ts[n]
      return out
    end
    if n >= limit and ts[1] ~= t then
      -- The page would split entries of one ts_ms: end it before them.
      while n > 0 and ts[n] == t do
        out[n + 1] = nil
        ts[n] = nil
        n = n - 1
      end
      out[1] = t
      return out
    end
    if n >= 1100 then
      out[1] = t -- a thousand and more of one millisecond: no longer whole, but bounded
      return out
    end
    n = n + 1
    out[n + 1] = e
    ts[n] = t
  end
end
return out
