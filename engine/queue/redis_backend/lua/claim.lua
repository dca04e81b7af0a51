-- Take the head of the line, as the caller read it just before.
-- KEYS: keys.LINE_KEYS, then keys.job_keys of the head
-- ARGV: the head's id, now, lease ms, worker name
-- -> {id, attempts, seconds it waited}; or false when the line changed meanwhile (another worker
--    took the head, a job went ahead of it, its record is gone), so the caller looks again
local shared, own = shared_keys(1), own_keys(5)
local id, now, lease_ms, worker = ARGV[1], ARGV[2], ARGV[3], ARGV[4]

if redis.call('ZRANGE', shared.queued, 0, 0)[1] ~= id then return false end
if redis.call('HEXISTS', own.job, 'user_id') == 0 then
  redis.call('ZREM', shared.queued, id)  -- its record is gone (forgotten): not a job any more
  return false
end
return take(shared, own, id, now, lease_ms, worker)
