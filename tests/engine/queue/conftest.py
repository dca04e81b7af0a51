"""Fixtures for the queue tests: a queue factory parametrized over both backends, and a real
redis-server on a free port (skipped when the binary is missing, unless ORSAY_REQUIRE_REDIS=1)."""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.queue import JobQueue, QueueLimits, open_queue
from engine.queue.embedded import SqliteQueue
from engine.queue.seam import Painter
from tests.doubles.queue_helpers import QueueFactory, RedisServer, redis_available


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    redis_available()
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[str]]]:
    """`orsay worker` processes a test starts; any still running at the end are killed."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(params=["sqlite", "redis"])
async def make_queue(request: Any, tmp_path: Path) -> AsyncIterator[QueueFactory]:
    """`await make_queue(painter=..., limits=..., retention_s=..., job_timeout_s=...)` -> a
    started queue of this test's backend; with a painter, something paints it (the embedded
    thread or a Redis worker task)."""
    opened: list[Any] = []
    server: RedisServer | None = None
    if request.param == "redis":
        redis_available()
        server = RedisServer(tmp_path)
        server.start()

    async def factory(
        painter: Painter | None = None,
        limits: QueueLimits | None = None,
        retention_s: float = 0.0,
        job_timeout_s: float | None = None,
    ) -> JobQueue:
        if server is None:
            queue = open_queue(
                None, painter=painter, data_dir=tmp_path, limits=limits, retention_s=retention_s
            )
            if job_timeout_s is not None:  # open_queue leaves it to the operator's default
                assert isinstance(queue, SqliteQueue)
                queue.job_timeout_s = job_timeout_s
            await queue.start()
            opened.append(queue)
            return queue
        from engine.queue.redis_backend.worker import WorkerConfig, start_worker_task

        queue = open_queue(server.url, limits=limits, retention_s=retention_s)
        await queue.start()
        opened.append(queue)
        if painter is not None:
            config = WorkerConfig(url=server.url, limits=limits or QueueLimits(), poll_s=0.05)
            if job_timeout_s is not None:
                config.job_timeout_s = job_timeout_s
            opened.append(await start_worker_task(config, painter))
        return queue

    factory.backend = request.param  # type: ignore[attr-defined]
    yield factory
    for thing in reversed(opened):
        await asyncio.wait_for(thing.close(), 30)
    if server is not None:
        server.stop()
