-- Record how a running job ended, fenced by its try: a worker that lost its lease cannot
-- overwrite a later try's outcome.
-- KEYS: the job's record, the user's active jobs, running jobs, the job's events, the day's
--       counters, recent run times, the job's lease
-- ARGV: id, state, now, reason, result, the terminal event, run seconds ('' unless done), the
--       try the caller ran ('' for any), '1' if only an expired lease may be finished
-- -> 1 recorded, 0 not running any more (or painted by another try)
local job, active, running, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local day, runs, lease = KEYS[5], KEYS[6], KEYS[7]
local id, state, now, reason, result = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local event, run_s, attempts, expired_only = ARGV[6], ARGV[7], ARGV[8], ARGV[9]

if redis.call('HGET', job, 'state') ~= 'running' then return 0 end
if attempts ~= '' and redis.call('HGET', job, 'attempts') ~= attempts then return 0 end
if expired_only == '1' and redis.call('EXISTS', lease) == 1 then return 0 end
redis.call('HSET', job, 'state', state, 'finished_at', now)
if reason ~= '' then redis.call('HSET', job, 'error', reason) end
if result ~= '' then redis.call('HSET', job, 'result', result) end
redis.call('SREM', active, id)
redis.call('SREM', running, id)
redis.call('DEL', lease)
redis.call('HINCRBY', day, state, 1)
redis.call('EXPIRE', day, DAY_KEY_TTL_S)
if run_s ~= '' then
  redis.call('LPUSH', runs, run_s)
  redis.call('LTRIM', runs, 0, RECENT - 1)
end
redis.call('XADD', events, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'e', event)
return 1
