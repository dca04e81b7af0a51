-- The waiting line (keys.QUEUED), kept in engine.queue.policy.fair_order's order by its scores:
-- a job's score is submit_ms - (MAX_RANK - rank) * RANK_SPAN_MS, rank being its place among its
-- user's waiting jobs in submit order. So every user's first waiting job sorts before anybody's
-- second one, and jobs of one rank sort by submit time. A user's waiting jobs always hold ranks
-- 1..n in submit order; the functions below keep it so.

-- `id` leaves the line; its user's jobs behind it move up a rank.
local function leave_line(queued, active, id)
  local left = redis.call('ZSCORE', queued, id)
  if not left then return end
  redis.call('ZREM', queued, id)
  left = tonumber(left)
  for _, other in ipairs(redis.call('SMEMBERS', active)) do
    local score = redis.call('ZSCORE', queued, other)
    if score and tonumber(score) > left then
      redis.call('ZINCRBY', queued, -RANK_SPAN_MS, other)
    end
  end
end

-- `id`, submitted at `submit_ms`, comes back to its place in submit order among its user's
-- waiting jobs; the ones submitted after it move down a rank. The i-th lowest score of a user
-- is rank i, which gives back that job's submit time.
local function enter_line(queued, active, id, submit_ms)
  submit_ms = tonumber(submit_ms)
  local waiting = {}
  for _, other in ipairs(redis.call('SMEMBERS', active)) do
    local score = other ~= id and redis.call('ZSCORE', queued, other)
    if score then table.insert(waiting, {id = other, score = tonumber(score)}) end
  end
  table.sort(waiting, function(a, b) return a.score < b.score end)
  local rank = 1
  for i, other in ipairs(waiting) do
    -- half a microsecond of slack for the float arithmetic; submits are microseconds apart
    if other.score + (MAX_RANK - i) * RANK_SPAN_MS < submit_ms - 0.0005 then
      rank = i + 1
    else
      redis.call('ZINCRBY', queued, RANK_SPAN_MS, other.id)
    end
  end
  local score = submit_ms - (MAX_RANK - rank) * RANK_SPAN_MS
  redis.call('ZADD', queued, string.format('%.3f', score), id)
end

-- Followers of waiting jobs re-read their place when this stream moves.
local function line_moved(line, id)
  redis.call('XADD', line, 'MAXLEN', '~', LINE_MAXLEN, '*', 'j', id)
end

-- An event for the job's followers, as codec.decode_event reads it.
local function say(events, doc)
  redis.call('XADD', events, 'MAXLEN', '~', EVENTS_MAXLEN, '*', 'e', cjson.encode(doc))
end
