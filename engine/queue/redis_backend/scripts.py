"""The Lua scripts behind every change to the Redis queue that must be atomic.

Accepting a job (limits check + insert), leaving the line (and moving the user's later jobs up a
rank), claiming the head of the line with a lease (and a batch's further jobs), finishing and
handing back: each is one script, so no other client ever sees half of it. Key names come from
keys.py; CLAIM finds its job in the line, so it builds that job's keys from the prefixes (a
single Redis, not a cluster).
Event payloads written by scripts use cjson, which reads back through codec.decode_event.
"""

from __future__ import annotations

from engine.queue.redis_backend import keys as k

_LINE = f"""
local SPAN = {k.RANK_SPAN_MS}
local function leave_line(queued, active, id)
  local s = redis.call('ZSCORE', queued, id)
  if not s then return end
  redis.call('ZREM', queued, id)
  s = tonumber(s)
  for _, m in ipairs(redis.call('SMEMBERS', active)) do
    local ms = redis.call('ZSCORE', queued, m)
    if ms and tonumber(ms) > s then redis.call('ZINCRBY', queued, -SPAN, m) end
  end
end
-- back at the head of its user's jobs (where it was when it left); the others move down a rank
local function enter_line(queued, active, id, submit_ms)
  for _, m in ipairs(redis.call('SMEMBERS', active)) do
    if m ~= id and redis.call('ZSCORE', queued, m) then redis.call('ZINCRBY', queued, SPAN, m) end
  end
  local score = tonumber(submit_ms) - ({k.MAX_RANK} - 1) * SPAN
  redis.call('ZADD', queued, string.format('%.3f', score), id)
end
local function moved(line, id)
  redis.call('XADD', line, 'MAXLEN', '~', {k.LINE_MAXLEN}, '*', 'j', id)
end
local function say(events, doc)
  redis.call('XADD', events, 'MAXLEN', '~', {k.EVENTS_MAXLEN}, '*', 'e', cjson.encode(doc))
end
"""

# KEYS: job, queued, active, user, undelivered, line, then blob, refs per blob (keys.blob_keys),
#       last the submit key's record (keys.submitted_key: '' for a submit without a key)
# ARGV: id, per_user, max_queue, created_at, user_id, chat_id, request, summary, blob shas
#       (comma-separated), then each blob's bytes
# -> {position, score} or {-1} (per-user limit) or {-2} (queue full) or {-3, id} (the key's job)
SUBMIT = f"""
{_LINE}
local submitted = KEYS[#KEYS]
if submitted ~= '' then
  local known = redis.call('GET', submitted)
  if known then return {{-3, known}} end
end
if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[2]) then return {{-1}} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return {{-2}} end
local rank = 1
for _, m in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if redis.call('ZSCORE', KEYS[2], m) then rank = rank + 1 end
end
if rank > {k.MAX_RANK} then rank = {k.MAX_RANK} end
-- Redis' clock to the microsecond: scripts run one at a time, so submit order is score order
local t = redis.call('TIME')
local now_ms = string.format('%.3f', tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000)
local score = string.format('%.3f', tonumber(now_ms) - ({k.MAX_RANK} - rank) * SPAN)
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'user_id', ARGV[5], 'chat_id', ARGV[6],
  'state', 'queued', 'created_at', ARGV[4], 'attempts', 0, 'request', ARGV[7],
  'summary', ARGV[8], 'submit_ms', now_ms, 'delivered', 0, 'blobs', ARGV[9])
for i = 10, #ARGV do
  local blob, refs = KEYS[7 + (i - 10) * 2], KEYS[8 + (i - 10) * 2]
  if redis.call('EXISTS', blob) == 1 then redis.call('PERSIST', blob)
  else redis.call('SET', blob, ARGV[i]) end
  redis.call('ZADD', refs, 'inf', ARGV[1])
  redis.call('PERSIST', refs)
end
redis.call('ZADD', KEYS[2], score, ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
moved(KEYS[6], ARGV[1])
if submitted ~= '' then  -- /forget deletes it with the job (the record names it)
  redis.call('SET', submitted, ARGV[1], 'EX', {k.SUBMITTED_TTL_S})
  redis.call('HSET', KEYS[1], 'submitted', submitted)
end
return {{redis.call('ZRANK', KEYS[2], ARGV[1]) + 1, score}}
"""

# KEYS: job, queued, active, line, events. ARGV: id, now
# -> 1 cancelled while waiting, 2 running (its worker stops it), 0 finished or unknown
CANCEL = f"""
{_LINE}
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'queued' then
  leave_line(KEYS[2], KEYS[3], ARGV[1])
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[2])
  redis.call('SREM', KEYS[3], ARGV[1])
  say(KEYS[5], {{job_id = ARGV[1], kind = 'cancelled'}})
  moved(KEYS[4], ARGV[1])
  return 1
elseif st == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', 1)
  return 2
end
return 0
"""

# Mark a waiting job running here, with a lease; its record must exist. -> {id, attempts, wait}
_TAKE = f"""
local function take(queued, running, line, waits, id, user, now, lease_ms, worker)
  local job = '{k.JOB_PREFIX}' .. id
  leave_line(queued, '{k.ACTIVE_PREFIX}' .. user, id)
  local attempts = redis.call('HINCRBY', job, 'attempts', 1)
  redis.call('HSET', job, 'state', 'running', 'started_at', now, 'worker', worker)
  redis.call('HDEL', job, 'note')  -- a painter note belongs to one try
  redis.call('SADD', running, id)
  redis.call('SET', '{k.LEASE_PREFIX}' .. id, worker, 'PX', lease_ms)
  local wait = tonumber(now) - tonumber(redis.call('HGET', job, 'created_at'))
  redis.call('LPUSH', waits, string.format('%.3f', wait))
  redis.call('LTRIM', waits, 0, {k.RECENT_WAITS - 1})
  say('{k.EVENTS_PREFIX}' .. id, {{job_id = id, kind = 'started', elapsed_s = 0}})
  moved(line, id)
  return {{id, attempts, string.format('%.3f', wait)}}
end
"""

# KEYS: queued, running, line, waits. ARGV: now, lease ms, worker name
# -> {id, attempts, seconds it waited} of the job now running here, or false (empty line)
CLAIM = f"""
{_LINE}
{_TAKE}
while true do
  local head = redis.call('ZRANGE', KEYS[1], 0, 0)
  if #head == 0 then return false end
  local id = head[1]
  local user = redis.call('HGET', '{k.JOB_PREFIX}' .. id, 'user_id')
  if not user then
    redis.call('ZREM', KEYS[1], id)  -- its record is gone (forgotten): not a job any more
  else
    return take(KEYS[1], KEYS[2], KEYS[3], KEYS[4], id, user, ARGV[1], ARGV[2], ARGV[3])
  end
end
"""

# A batch's further jobs (engine.queue.batches), after CLAIM took its head: of the ids given, in
# that (fair) order, the ones still waiting on their first try, at most `most` of them.
# KEYS: queued, running, line, waits. ARGV: now, lease ms, worker name, most, ids...
# -> a list of {id, attempts, seconds it waited}, possibly empty
CLAIM_MORE = f"""
{_LINE}
{_TAKE}
local taken = {{}}
for i = 5, #ARGV do
  if #taken >= tonumber(ARGV[4]) then break end
  local id = ARGV[i]
  local job = '{k.JOB_PREFIX}' .. id
  local user = redis.call('HGET', job, 'user_id')
  if user and redis.call('ZSCORE', KEYS[1], id) and redis.call('HGET', job, 'attempts') == '0'
  then
    table.insert(taken, take(KEYS[1], KEYS[2], KEYS[3], KEYS[4], id, user, ARGV[1], ARGV[2],
      ARGV[3]))
  end
end
return taken
"""

# KEYS: job, active, running, events, day counters, recent runs, lease
# ARGV: id, state, now, reason, result, event, run seconds ('' unless done),
#       attempts the caller ran ('' for any), '1' if only an expired lease may be finished
# -> 1 recorded, 0 not running any more (or painted by another try)
FINISH = f"""
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if ARGV[8] ~= '' and redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[8] then return 0 end
if ARGV[9] == '1' and redis.call('EXISTS', KEYS[7]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'finished_at', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'result', ARGV[5]) end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[7])
redis.call('HINCRBY', KEYS[5], ARGV[2], 1)
redis.call('EXPIRE', KEYS[5], {k.DAY_KEY_TTL_S})
if ARGV[7] ~= '' then
  redis.call('LPUSH', KEYS[6], ARGV[7])
  redis.call('LTRIM', KEYS[6], 0, {k.RECENT - 1})
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', {k.EVENTS_MAXLEN}, '*', 'e', ARGV[6])
return 1
"""

# Back in line: a shutdown interrupted it (the try is given back) or its worker died (counted).
# KEYS: job, queued, running, line, lease. ARGV: id, attempts the caller saw, '1' to give the
# try back, '1' if only an expired lease may be handed back. -> 1 requeued, 0 not (any more)
REQUEUE = f"""
{_LINE}
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
if redis.call('HGET', KEYS[1], 'attempts') ~= ARGV[2] then return 0 end
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[5]) == 1 then return 0 end
local user = redis.call('HGET', KEYS[1], 'user_id')
redis.call('HSET', KEYS[1], 'state', 'queued')
redis.call('HDEL', KEYS[1], 'started_at', 'worker')
if ARGV[3] == '1' then redis.call('HINCRBY', KEYS[1], 'attempts', -1) end
enter_line(KEYS[2], '{k.ACTIVE_PREFIX}' .. user, ARGV[1], redis.call('HGET', KEYS[1], 'submit_ms'))
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('DEL', KEYS[5])
moved(KEYS[4], ARGV[1])
return 1
"""

# KEYS: blob, refs per blob (keys.blob_keys). ARGV: id, until (unix s; 0: the job's pictures are
# gone now). The job's reference ends then; a blob whose references all ended is deleted, else it
# expires with its last reference (so retention needs no sweeper).
RELEASE = """
local now = tonumber(redis.call('TIME')[1])
for i = 1, #KEYS, 2 do
  local blob, refs = KEYS[i], KEYS[i + 1]
  if tonumber(ARGV[2]) <= 0 then redis.call('ZREM', refs, ARGV[1])
  else redis.call('ZADD', refs, 'XX', ARGV[2], ARGV[1]) end
  redis.call('ZREMRANGEBYSCORE', refs, '-inf', now)
  if redis.call('ZCARD', refs) == 0 then
    redis.call('DEL', blob, refs)
  else
    local last = redis.call('ZRANGE', refs, -1, -1, 'WITHSCORES')[2]
    if last == 'inf' then
      redis.call('PERSIST', blob)
      redis.call('PERSIST', refs)
    else
      local at = math.ceil(tonumber(last))
      redis.call('EXPIREAT', blob, at)
      redis.call('EXPIREAT', refs, at)
    end
  end
end
return 1
"""
