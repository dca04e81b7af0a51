-- Cancel a job: a waiting one leaves the line here; a running one is flagged for its worker.
-- KEYS: the job's record, the line, the user's active jobs, the line-moved stream, the job's
--       events
-- ARGV: id, now
-- -> 1 cancelled while waiting, 2 running (its worker stops it), 0 finished or unknown
local job, queued, active, line, events = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local id, now = ARGV[1], ARGV[2]

local state = redis.call('HGET', job, 'state')
if state == 'queued' then
  leave_line(queued, active, id)
  redis.call('HSET', job, 'state', 'cancelled', 'finished_at', now)
  redis.call('SREM', active, id)
  say(events, {job_id = id, kind = 'cancelled'})
  line_moved(line, id)
  return 1
elseif state == 'running' then
  redis.call('HSET', job, 'cancel_requested', 1)
  return 2
end
return 0
