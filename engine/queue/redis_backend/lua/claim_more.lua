-- A batch's further jobs (engine.queue.batches), after CLAIM took its head: of the jobs given,
-- in that (fair) order, the ones still waiting on their first try, at most `most` of them.
-- KEYS: keys.LINE_KEYS, then keys.job_keys of each job, in the order of their ids
-- ARGV: now, lease ms, worker name, most, then the jobs' ids
-- -> a list of {id, attempts, seconds it waited}, possibly empty
local shared = shared_keys(1)
local FIRST_JOB_KEYS, KEYS_PER_JOB = 5, 4
local now, lease_ms, worker, most = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local FIRST_ID = 5

local taken = {}
for n = 0, #ARGV - FIRST_ID do
  if #taken >= most then break end
  local id, own = ARGV[FIRST_ID + n], own_keys(FIRST_JOB_KEYS + KEYS_PER_JOB * n)
  if redis.call('HEXISTS', own.job, 'user_id') == 1 and redis.call('ZSCORE', shared.queued, id)
    and redis.call('HGET', own.job, 'attempts') == '0' then
    table.insert(taken, take(shared, own, id, now, lease_ms, worker))
  end
end
return taken
