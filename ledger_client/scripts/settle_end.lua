-- settle_end: step 4 of settling. Forgets a batch that is written and credited, only if it
-- is still the partition's settling batch.
-- KEYS: 1 settling (hash), 2 settling batch id.  ARGV: 1 batch id
-- Returns 1 when the batch was ended now, 0 when it was not the settling batch.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
return 1
