"""What the Redis backend keeps in Redis, shared by the bot side and `orsay worker`.

arq owns queueing, pickup, retries and abort (`arq:queue`, `arq:job:*`, `arq:in-progress:*`). Next
to it we keep what arq does not: the job record (a hash per job, with pictures and result), its
events (a Stream per job, so a restarted bot can pick up where it was), the waiting line with fair
scores (`orsay:queued`, mirroring arq's scores for jobs not yet started) and per-user sets for the
limits. Every change that must be atomic (limits check + insert, leaving the line + re-ranking the
user's other jobs) is a small Lua script.

Fair order: a job's score is `submit_ms - (MAX_RANK - rank) * RANK_SPAN_MS`, rank being its place
among its user's waiting jobs, so every user's first waiting job sorts before anybody's second one.
Scores lie in the past, so arq runs them at once, in score order. When a job leaves the line its
user's later jobs move up one rank, in our zset and in arq's.
"""

from __future__ import annotations

from datetime import datetime

from arq.constants import default_queue_name, job_key_prefix

ARQ_QUEUE = default_queue_name
QUEUED = "orsay:queued"
LINE = "orsay:line"  # a tiny stream: "the line moved", so followers refresh their position
RUNNING = "orsay:running"
UNDELIVERED = "orsay:undelivered"
RUNS = "orsay:runs"  # recent run seconds, newest first
WAITS = "orsay:waits"
WORKERS = "orsay:workers"  # worker name -> last heartbeat (unix s)
RANK_SPAN_MS = 10_000_000_000  # ~115 days: ranks never mix for jobs submitted within that span
MAX_RANK = 100
EVENTS_MAXLEN = 200
KEEP_RECORDS_S = 2 * 86400
TASK = "paint"


def job_key(job_id: str) -> str:
    return f"orsay:job:{job_id}"


def arq_job_key(job_id: str) -> str:
    return job_key_prefix + job_id


def events_key(job_id: str) -> str:
    return f"orsay:events:{job_id}"


def active_key(user_id: int | str) -> str:
    return f"orsay:active:{user_id}"


def user_key(user_id: int | str) -> str:
    return f"orsay:user:{user_id}"


DAY_KEY_TTL_S = 3 * 86400


def day_key(ts: float) -> str:
    return f"orsay:day:{datetime.fromtimestamp(ts):%Y%m%d}"


_LEAVE_LINE = f"""
local function leave_line(queued, arqq, active, id)
  local s = redis.call('ZSCORE', queued, id)
  if not s then return end
  redis.call('ZREM', queued, id)
  s = tonumber(s)
  for _, m in ipairs(redis.call('SMEMBERS', active)) do
    local ms = redis.call('ZSCORE', queued, m)
    if ms and tonumber(ms) > s then
      redis.call('ZINCRBY', queued, '-{RANK_SPAN_MS}', m)
      if redis.call('ZSCORE', arqq, m) then
        redis.call('ZINCRBY', arqq, '-{RANK_SPAN_MS}', m)
      end
    end
  end
end
"""

# The arq job is written here too, in arq's own key layout and serialization (what
# ArqRedis.enqueue_job does, without its WATCH round trips): accepting a job is one atomic step,
# so a job is either in our record *and* arq's queue, or refused.
# KEYS: job, queued, active, user, undelivered, line, arq job, arq queue
# ARGV: id, per_user, max_queue, (unused), created_at, user_id, chat_id, request, summary,
#       arq payload, arq expiry ms
SUBMIT = f"""
if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[2]) then return {{-1, '0'}} end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return {{-2, '0'}} end
local rank = 1
for _, m in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  if redis.call('ZSCORE', KEYS[2], m) then rank = rank + 1 end
end
if rank > {MAX_RANK} then rank = {MAX_RANK} end
-- Redis' clock to the microsecond: scripts run one at a time, so submit order is score order
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local score = now_ms - ({MAX_RANK} - rank) * {RANK_SPAN_MS}
local score_s = string.format('%.3f', score)
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'user_id', ARGV[6], 'chat_id', ARGV[7],
  'state', 'queued', 'created_at', ARGV[5], 'attempts', 0, 'request', ARGV[8],
  'summary', ARGV[9], 'score', score_s, 'delivered', 0)
redis.call('ZADD', KEYS[2], score_s, ARGV[1])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('PSETEX', KEYS[7], ARGV[11], ARGV[10])
redis.call('ZADD', KEYS[8], score_s, ARGV[1])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', 10, '*', 'j', ARGV[1])
return {{redis.call('ZRANK', KEYS[2], ARGV[1]) + 1, score_s}}
"""

# KEYS: job, queued, arqq, active, line, events. ARGV: id, now, cancelled event
CANCEL = f"""
{_LEAVE_LINE}
local st = redis.call('HGET', KEYS[1], 'state')
if st == 'queued' then
  leave_line(KEYS[2], KEYS[3], KEYS[4], ARGV[1])
  redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_at', ARGV[2])
  redis.call('SREM', KEYS[4], ARGV[1])
  redis.call('XADD', KEYS[6], 'MAXLEN', '~', {EVENTS_MAXLEN}, '*', 'e', ARGV[3])
  redis.call('XADD', KEYS[5], 'MAXLEN', '~', 10, '*', 'j', ARGV[1])
  return 1
elseif st == 'running' then
  redis.call('HSET', KEYS[1], 'cancel_requested', 1)
  return 2
end
return 0
"""

# KEYS: job, queued, arqq, active, line, events, running. ARGV: id, now, attempts, started event
START = f"""
{_LEAVE_LINE}
local st = redis.call('HGET', KEYS[1], 'state')
if st ~= 'queued' and st ~= 'running' then return 0 end
leave_line(KEYS[2], KEYS[3], KEYS[4], ARGV[1])
redis.call('HSET', KEYS[1], 'state', 'running', 'started_at', ARGV[2], 'attempts', ARGV[3])
redis.call('SADD', KEYS[7], ARGV[1])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', {EVENTS_MAXLEN}, '*', 'e', ARGV[4])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', 10, '*', 'j', ARGV[1])
return 1
"""

# KEYS: job, active, running, events, day counters, recent runs.
# ARGV: id, state, now, error, result, event, run seconds ('' when not done)
FINISH = f"""
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'finished_at', ARGV[3])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'result', ARGV[5]) end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('HINCRBY', KEYS[5], ARGV[2], 1)
redis.call('EXPIRE', KEYS[5], {DAY_KEY_TTL_S})
if ARGV[7] ~= '' then
  redis.call('LPUSH', KEYS[6], ARGV[7])
  redis.call('LTRIM', KEYS[6], 0, 19)
end
redis.call('XADD', KEYS[4], 'MAXLEN', '~', {EVENTS_MAXLEN}, '*', 'e', ARGV[6])
return 1
"""

# Hand a running job back (worker shutdown). KEYS: job, queued, running, line. ARGV: id, score
REQUEUE = """
if redis.call('HGET', KEYS[1], 'state') ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'queued')
redis.call('HDEL', KEYS[1], 'started_at')
redis.call('HINCRBY', KEYS[1], 'attempts', -1)
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('XADD', KEYS[4], 'MAXLEN', '~', 10, '*', 'j', ARGV[1])
return 1
"""
