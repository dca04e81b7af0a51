"""The Redis queue's Lua scripts are given every key they touch (as Redis Cluster requires, and
as a reader of a script expects): no script holds a key name or a prefix to build one, and a
queue's round runs with every script behind a guard that refuses a key not in its KEYS."""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

import pytest
from redis.exceptions import ResponseError

from engine.queue import JobRequest, JobState, QueueLimits, StyleChoice, open_queue
from engine.queue.redis_backend import keys as k
from engine.queue.redis_backend import scripts
from engine.queue.redis_backend.store import connect
from engine.queue.redis_backend.worker import WorkerConfig, start_worker_task
from tests.doubles.batch_painters import BatchingPainter
from tests.doubles.queue_helpers import RedisServer
from tests.engine.queue.test_queue_contract import follow
from tests.engine.queue.test_queue_fair_order import hand_back_a_batch

NAMES = ("SUBMIT", "CANCEL", "CLAIM", "CLAIM_MORE", "FINISH", "REQUEUE", "RELEASE")
# In front of a script: a local `redis` whose call() refuses a key the script was not given
# (the first argument of every command the scripts use; DEL's every argument; TIME has none).
GUARD = """
local declared = {}
for _, key in ipairs(KEYS) do declared[key] = true end
local real_redis = redis
local redis = setmetatable({call = function(command, ...)
  local args, name = {...}, string.upper(command)
  local touched = {args[1]}
  if name == 'DEL' then touched = args elseif name == 'TIME' then touched = {} end
  for _, key in ipairs(touched) do
    if not declared[key] then error('undeclared key ' .. tostring(key) .. ' in ' .. name) end
  end
  return real_redis.call(command, ...)
end}, {__index = real_redis})
"""


def test_no_script_holds_a_key_name() -> None:
    folder = resources.files(scripts.__package__).joinpath("lua")
    sources = {entry.name: entry.read_text("utf-8") for entry in folder.iterdir()}
    assert {"submit.lua", "claim.lua", "line.lua"} <= set(sources)
    for name, source in sources.items():
        assert k.PREFIX not in source, name
    assert all(isinstance(value, int) for value in scripts.CONSTANTS.values())
    for name in NAMES:  # every script as Redis gets it: the constants, helpers, its own file
        assert k.PREFIX not in getattr(scripts, name)


async def test_every_script_is_given_every_key_it_touches(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    client: Any = connect(redis_server.url)
    try:  # the guard itself: a script reaching for a key it was not given fails
        with pytest.raises(ResponseError, match="undeclared key orsay:other"):
            await client.eval(GUARD + "return redis.call('GET', 'orsay:other')", 0)
        assert await client.eval(GUARD + "return redis.call('GET', KEYS[1])", 1, "given") is None
    finally:
        await client.aclose()
    for name in NAMES:
        monkeypatch.setattr(scripts, name, GUARD + getattr(scripts, name))

    limits = QueueLimits(per_user=3)
    queue = open_queue(redis_server.url, limits=limits)
    await queue.start()
    painter = BatchingPainter(batch=2, steps=25, scales=1, step_s=0.02)
    config = WorkerConfig(url=redis_server.url, limits=limits, poll_s=0.05)
    worker = await start_worker_task(config, painter)
    try:
        painting = StyleChoice(slug="starry", image=b"the painting's bytes")  # a shared blob
        kept, _ = await queue.submit(JobRequest(7, 7, b"kept", [painting]))
        dropped, _ = await queue.submit(JobRequest(8, 8, b"dropped", [painting]))
        assert await queue.cancel(dropped)  # SUBMIT, CANCEL (CLAIM and FINISH take `kept`)
        handed_back = await hand_back_a_batch(queue, painter, worker.close)  # CLAIM_MORE, REQUEUE
        assert not worker.task.done() or worker.task.exception() is None
        worker = await start_worker_task(config, painter)
        for job_id in [kept, *(job_id for job_id, _ in handed_back)]:
            events = await follow(queue, job_id, timeout=30)
            assert events[-1].kind == "done", events[-1]
            await queue.acknowledge(job_id)  # RELEASE
        record = await queue.get(kept)
        assert record is not None and record.state == JobState.DONE
        assert not worker.task.done()  # a refused key would have ended the worker's loop
    finally:
        await asyncio.wait_for(worker.close(), 30)
        await queue.close()
