"""A queue keeps a bounded number of records while it runs (issue 30, finding 6): with the
default ORSAY_RETENTION=0 the embedded queue deleted delivered jobs and their keys only when it
started, so a bot up for months kept every job it ever painted; in Redis every key of a job
expires, but the user's set of job ids kept them all."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import engine.queue.embedded.store as store_module
import engine.queue.embedded.worker as worker_module
from engine.queue import JobQueue, open_queue
from engine.queue.embedded import SqliteQueue
from engine.queue.embedded.store import KEEP_KEYS_S, KEEP_RECORDS_S
from engine.queue.redis_backend import RedisQueue
from engine.queue.redis_backend import keys as k
from engine.queue.redis_backend.worker import WorkerConfig, start_worker_task
from engine.queue.stub_painter import StubPainter
from tests.doubles.clock import Clock
from tests.doubles.queue_helpers import RedisServer, request
from tests.engine.queue.test_queue_contract import follow


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(store_module, "time", clock)
    monkeypatch.setattr(worker_module, "time", clock)
    return clock


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SqliteQueue]:
    queue = SqliteQueue(tmp_path / "queue.sqlite3", painter=StubPainter())
    await queue.start()
    yield queue
    await queue.close()


def rows(queue: SqliteQueue, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(queue.path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


async def paint(queue: JobQueue, user: int, key: str) -> str:
    """Submit, paint and deliver one job; its id."""
    job_id, _ = await queue.submit(request(user), key=key)
    assert (await follow(queue, job_id))[-1].kind == "done"
    await queue.acknowledge(job_id)
    return job_id


async def test_delivered_jobs_and_their_keys_go_while_the_queue_runs(
    queue: SqliteQueue, clock: Clock
) -> None:
    assert queue.retention_s == 0  # the default: pictures go at delivery, records kept 2 days
    old = await paint(queue, 1, "u:1:1")
    clock.offset = max(KEEP_RECORDS_S, KEEP_KEYS_S) + 60
    new = await paint(queue, 2, "u:2:2")  # delivered two days later, the queue still running
    assert rows(queue, "SELECT id FROM jobs") == [(new,)]
    assert rows(queue, "SELECT key, job_id FROM job_keys") == [("u:2:2", new)]
    assert old != new
    assert rows(queue, "SELECT COUNT(*) FROM blobs") == [(0,)]


async def test_a_recent_job_and_its_key_are_kept(queue: SqliteQueue, clock: Clock) -> None:
    """The key of a job delivered a moment ago still finds it: a replay gets the same job."""
    first = await paint(queue, 1, "u:1:1")
    clock.offset = min(KEEP_RECORDS_S, KEEP_KEYS_S) - 60
    await paint(queue, 2, "u:2:2")
    assert len(rows(queue, "SELECT id FROM jobs")) == 2
    again, _ = await queue.submit(request(1), key="u:1:1")
    assert again == first


async def test_a_users_job_set_in_redis_drops_jobs_whose_record_expired(
    redis_server: RedisServer,
) -> None:
    """Every Redis key of a job expires after its delivery but one: the user's set of job ids
    (for /forget) kept every id it was ever given, so it grew with each job for good."""
    queue = open_queue(redis_server.url)
    await queue.start()
    worker = await start_worker_task(WorkerConfig(url=redis_server.url, poll_s=0.05), StubPainter())
    try:
        assert isinstance(queue, RedisQueue)
        old = await paint(queue, 1, "u:1:1")
        assert 0 < await queue.redis.ttl(k.job_key(old)) <= k.KEEP_RECORDS_S
        await queue.redis.delete(k.job_key(old))  # what its TTL does two days on
        new = await paint(queue, 1, "u:1:2")
        assert await queue.redis.smembers(k.user_key(1)) == {new.encode()}
    finally:
        await worker.close()
        await queue.close()
