-- Mark a waiting job running on this worker, with a lease; its record must exist.
-- `shared`: the line, running jobs, the line-moved stream and recent waits (keys.LINE_KEYS);
-- `own`: the job's record, its user's active jobs, its lease and its events (keys.job_keys).
-- -> {id, attempts, seconds it waited}
local function take(shared, own, id, now, lease_ms, worker)
  leave_line(shared.queued, own.active, id)
  local attempts = redis.call('HINCRBY', own.job, 'attempts', 1)
  redis.call('HSET', own.job, 'state', 'running', 'started_at', now, 'worker', worker)
  redis.call('HDEL', own.job, 'note')  -- a painter note belongs to one try
  redis.call('SADD', shared.running, id)
  redis.call('SET', own.lease, worker, 'PX', lease_ms)
  local wait = tonumber(now) - tonumber(redis.call('HGET', own.job, 'created_at'))
  redis.call('LPUSH', shared.waits, string.format('%.3f', wait))
  redis.call('LTRIM', shared.waits, 0, RECENT_WAITS - 1)
  say(own.events, {job_id = id, kind = 'started', elapsed_s = 0})
  line_moved(shared.line, id)
  return {id, attempts, string.format('%.3f', wait)}
end

local function shared_keys(first)
  return {queued = KEYS[first], running = KEYS[first + 1], line = KEYS[first + 2],
    waits = KEYS[first + 3]}
end

local function own_keys(first)
  return {job = KEYS[first], active = KEYS[first + 1], lease = KEYS[first + 2],
    events = KEYS[first + 3]}
end
