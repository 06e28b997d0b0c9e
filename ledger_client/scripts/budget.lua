-- budget: set or clear a user's daily coin cap; returns {cap or -1, spent today}.
-- KEYS: 1 budget, 2 spent today.  ARGV: 1 cap ('' clears it, '?' only reads).
if ARGV[1] == '' then
  redis.call('DEL', KEYS[1])
elseif ARGV[1] ~= '?' then
  redis.call('SET', KEYS[1], ARGV[1])
end
return {tonumber(redis.call('GET', KEYS[1]) or '-1'), tonumber(redis.call('GET', KEYS[2]) or '0')}
