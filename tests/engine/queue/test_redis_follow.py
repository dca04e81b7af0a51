"""Following a job in Redis (engine/queue/redis_backend/events.py) when single calls fail or
hang: the follower must still hear the job's end, with its picture. A real redis-server, a
worker task with the stub painter, and one call of the bot's client made to fail or stall."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.queue import open_queue
from engine.queue.redis_backend import events as follow_module
from engine.queue.redis_backend.worker import WorkerConfig, WorkerHandle, start_worker_task
from engine.queue.seam import JobEvent, JobState
from engine.queue.stub_painter import StubPainter
from tests.doubles.queue_helpers import RedisServer, request

pytestmark = pytest.mark.redis


@pytest.fixture
async def queue(redis_server: RedisServer) -> AsyncIterator[Any]:
    opened = open_queue(redis_server.url)
    await opened.start()
    yield opened
    await opened.close()


async def start_worker(url: str) -> WorkerHandle:
    return await start_worker_task(
        WorkerConfig(url=url, poll_s=0.05), StubPainter(steps=3, scales=1, step_s=0.05)
    )


async def until_terminal(queue: Any, job_id: str, timeout: float = 20.0) -> list[JobEvent]:
    async def collect() -> list[JobEvent]:
        return [event async for event in queue.events(job_id)]

    return await asyncio.wait_for(collect(), timeout)


async def test_a_done_whose_picture_could_not_be_fetched_is_read_again(
    queue: Any, redis_server: RedisServer
) -> None:
    """The `done` arrives by XREAD, then fetching its picture fails once (a stale connection
    after a Redis restart): the follower must read that entry again, not step past it."""
    job_id, _ = await queue.submit(request(user=1))
    real_hget = queue.redis.hget
    failed: list[str] = []

    async def hget_failing_once(key: str, field: str) -> Any:
        if field == "result" and not failed:
            failed.append(key)
            raise RedisConnectionError("Connection closed by server.")
        return await real_hget(key, field)

    queue.redis.hget = hget_failing_once
    following = asyncio.create_task(until_terminal(queue, job_id))
    await asyncio.sleep(0.3)  # the follower has replayed `queued` and reads the stream
    worker = await start_worker(redis_server.url)
    try:
        events = await following
    finally:
        await worker.close()
    assert failed, "the picture was never fetched through the failing call"
    assert events[-1].kind == "done" and events[-1].result, [e.kind for e in events]
    assert (await queue.get(job_id)).state == JobState.DONE


async def test_a_stalled_read_is_cut_short_and_retried(
    queue: Any, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """A blocking read that never returns (a wedged connection) is abandoned after
    STEP_TIMEOUT_S, logged, and the follower carries on to the job's end."""
    monkeypatch.setattr(follow_module, "STEP_TIMEOUT_S", 1.0)
    job_id, _ = await queue.submit(request(user=2))
    client = queue.follow_client
    real_xread = client.xread
    stalled: list[bool] = []

    async def xread_stalling_once(*args: Any, **kwargs: Any) -> Any:
        if not stalled:
            stalled.append(True)
            await asyncio.sleep(3600)
        return await real_xread(*args, **kwargs)

    client.xread = xread_stalling_once
    worker = await start_worker(redis_server.url)
    try:
        with caplog.at_level(logging.WARNING, logger=follow_module.__name__):
            events = await until_terminal(queue, job_id)
    finally:
        await worker.close()
    assert stalled
    assert events[-1].kind == "done" and events[-1].result
    assert any("did not answer within" in r.getMessage() for r in caplog.records)
