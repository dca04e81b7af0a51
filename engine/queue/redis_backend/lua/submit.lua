-- Accept a job: the limits checked and the job recorded in one step.
-- KEYS: the job's record, the line, the user's active jobs, all the user's jobs, undelivered
--       jobs, the line-moved stream, then a blob and its references per gallery painting
--       (keys.blob_keys), last the submit key's record (keys.submitted_key: '' for a submit
--       without a key)
-- ARGV: id, per-user limit, queue limit, created_at, user id, chat id, request, summary, the
--       blobs' sha256s (comma-separated), then each blob's bytes
-- -> {place in line, score}, or {-1} (the user has too many jobs) or {-2} (the queue is full)
--    or {-3, id} (the job an earlier submit with this key made)
local job, queued, active = KEYS[1], KEYS[2], KEYS[3]
local user_jobs, undelivered, line = KEYS[4], KEYS[5], KEYS[6]
local FIRST_BLOB_KEY = 7
local submitted = KEYS[#KEYS]
local id, per_user, max_queue = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local created_at, user_id, chat_id = ARGV[4], ARGV[5], ARGV[6]
local request, summary, shas = ARGV[7], ARGV[8], ARGV[9]
local FIRST_BLOB = 10

-- a replayed update finds the job its first delivery made, whatever the limits say now
if submitted ~= '' then
  local known = redis.call('GET', submitted)
  if known then return {-3, known} end
end
if redis.call('SCARD', active) >= per_user then return {-1} end
if redis.call('ZCARD', queued) >= max_queue then return {-2} end
local rank = 1
for _, other in ipairs(redis.call('SMEMBERS', active)) do
  if redis.call('ZSCORE', queued, other) then rank = rank + 1 end
end
if rank > MAX_RANK then rank = MAX_RANK end
-- Redis' clock to the microsecond: scripts run one at a time, so submit order is score order
local t = redis.call('TIME')
local now_ms = string.format('%.3f', tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000)
local score = string.format('%.3f', tonumber(now_ms) - (MAX_RANK - rank) * RANK_SPAN_MS)
redis.call('HSET', job, 'id', id, 'user_id', user_id, 'chat_id', chat_id,
  'state', 'queued', 'created_at', created_at, 'attempts', 0, 'request', request,
  'summary', summary, 'submit_ms', now_ms, 'delivered', 0, 'blobs', shas)
for n = 0, #ARGV - FIRST_BLOB do
  local blob, refs = KEYS[FIRST_BLOB_KEY + 2 * n], KEYS[FIRST_BLOB_KEY + 2 * n + 1]
  if redis.call('EXISTS', blob) == 1 then redis.call('PERSIST', blob)
  else redis.call('SET', blob, ARGV[FIRST_BLOB + n]) end
  redis.call('ZADD', refs, 'inf', id)
  redis.call('PERSIST', refs)
end
redis.call('ZADD', queued, score, id)
redis.call('SADD', active, id)
redis.call('SADD', user_jobs, id)
redis.call('SADD', undelivered, id)
line_moved(line, id)
if submitted ~= '' then  -- /forget deletes it with the job (the record names it)
  redis.call('SET', submitted, id, 'EX', SUBMITTED_TTL_S)
  redis.call('HSET', job, 'submitted', submitted)
end
return {redis.call('ZRANK', queued, id) + 1, score}
