-- Back in line: a shutdown interrupted the job (the try is given back) or its worker died (the
-- try counts), fenced by the try the caller saw.
-- KEYS: the job's record, the line, running jobs, the line-moved stream, the job's lease, the
--       user's active jobs
-- ARGV: id, the try the caller saw, '1' to give the try back, '1' if only an expired lease may
--       be handed back
-- -> 1 requeued, 0 not (any more)
local job, queued, running = KEYS[1], KEYS[2], KEYS[3]
local line, lease, active = KEYS[4], KEYS[5], KEYS[6]
local id, attempts, give_back, expired_only = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

if redis.call('HGET', job, 'state') ~= 'running' then return 0 end
if redis.call('HGET', job, 'attempts') ~= attempts then return 0 end
if expired_only == '1' and redis.call('EXISTS', lease) == 1 then return 0 end
redis.call('HSET', job, 'state', 'queued')
redis.call('HDEL', job, 'started_at', 'worker')
if give_back == '1' then redis.call('HINCRBY', job, 'attempts', -1) end
enter_line(queued, active, id, redis.call('HGET', job, 'submit_ms'))
redis.call('SREM', running, id)
redis.call('DEL', lease)
line_moved(line, id)
return 1
