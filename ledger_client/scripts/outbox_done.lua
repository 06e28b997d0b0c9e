-- outbox_done: the last step of a gift on a Redis Cluster, on the sender's partition: the
-- send was published (publish.lua answered its seq), so its outbox entry goes and its
-- idempotency record learns the seq (a later retry is answered without publishing again).
-- KEYS: 1 outbox, then 1 per send: idem
-- ARGV: 2 per send: outbox field "sub|id", the record "digest|balance|seq"
for n = 2, #KEYS do
  local j = 2 * (n - 1) - 1
  redis.call('HDEL', KEYS[1], ARGV[j])
  if redis.call('EXISTS', KEYS[n]) == 1 then
    redis.call('SET', KEYS[n], ARGV[j + 1], 'KEEPTTL')
  end
end
return #KEYS - 1
