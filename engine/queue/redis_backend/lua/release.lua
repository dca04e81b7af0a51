-- End one job's hold on its gallery paintings (engine.queue.blobs) at `until_s`: a blob whose
-- holds all ended is deleted, else it expires with its last hold (so retention needs no sweeper).
-- KEYS: a blob and its references, for each blob of the job (keys.blob_keys)
-- ARGV: id, until (unix s; 0: the job's pictures are gone now)
-- -> 1
local id, until_arg = ARGV[1], ARGV[2]
local until_s = tonumber(until_arg)

local now = tonumber(redis.call('TIME')[1])
for at = 1, #KEYS, 2 do
  local blob, refs = KEYS[at], KEYS[at + 1]
  if until_s <= 0 then redis.call('ZREM', refs, id)
  else redis.call('ZADD', refs, 'XX', until_arg, id) end
  redis.call('ZREMRANGEBYSCORE', refs, '-inf', now)
  if redis.call('ZCARD', refs) == 0 then
    redis.call('DEL', blob, refs)
  else
    local last = redis.call('ZRANGE', refs, -1, -1, 'WITHSCORES')[2]
    if last == 'inf' then
      redis.call('PERSIST', blob)
      redis.call('PERSIST', refs)
    else
      local at_s = math.ceil(tonumber(last))
      redis.call('EXPIREAT', blob, at_s)
      redis.call('EXPIREAT', refs, at_s)
    end
  end
end
return 1
