"""Batches and durability: a process that dies mid-batch, or stops, gives every job of the batch
back, and each is then delivered exactly once, with its own count of tries."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from engine.queue import JobState, open_queue
from engine.queue.redis_backend.worker import WorkerConfig, start_worker_task
from tests.doubles.batch_painters import BatchingPainter
from tests.doubles.queue_helpers import RedisServer, request
from tests.engine.queue.test_queue_crash import (
    HERE,
    child_env,
    delivered_once,
    kill9,
    read_until,
    spawn_worker,
    wait_for_progress,
)


def spawn_embedded_batches(data_dir: Path, *contents: str) -> subprocess.Popen[str]:
    child = [sys.executable, str(HERE / "embedded_child.py"), "--batch", "2", str(data_dir)]
    return subprocess.Popen(
        [*child, "0.05", *contents], stdout=subprocess.PIPE, text=True, env=child_env()
    )


async def test_embedded_kill9_mid_batch_gives_every_job_back(tmp_path: Path) -> None:
    child = spawn_embedded_batches(tmp_path, "one", "two", "three")
    ids = read_until(child, "submitted", 3)
    assert sorted(read_until(child, "started", 2)) == sorted(ids[:2])  # one batch of two
    kill9(child)

    painter = BatchingPainter(batch=2)
    queue = open_queue(None, painter=painter, data_dir=tmp_path)
    await queue.start()
    try:
        assert await delivered_once(queue, ids) == {ids[0]: 2, ids[1]: 2, ids[2]: 1}
        # the retried jobs are painted alone: a crasher among them would take nobody with it
        assert sorted(painter.batches) == [[b"one"], [b"three"], [b"two"]]
    finally:
        await queue.close()


async def test_redis_worker_kill9_mid_batch_gives_every_job_back(
    redis_server: RedisServer, workers: list[subprocess.Popen[str]]
) -> None:
    queue = open_queue(redis_server.url)
    await queue.start()
    try:
        ids = [(await queue.submit(request(user=u, content=b"job%d" % u)))[0] for u in range(3)]
        pairs = "tests.doubles.batch_painters:pairs"
        workers.append(spawn_worker(redis_server.url, "--lease", "1", painter=pairs))
        await asyncio.gather(*(wait_for_progress(queue, job_id) for job_id in ids[:2]))
        kill9(workers[0])  # both jobs of its batch were being painted
        painter = BatchingPainter(batch=2)
        config = WorkerConfig(url=redis_server.url, lease_s=1, poll_s=0.05)
        handle = await start_worker_task(config, painter)
        try:
            # each lease expired on its own and each job was handed back with its own try counted
            assert await delivered_once(queue, ids) == {ids[0]: 2, ids[1]: 2, ids[2]: 1}
        finally:
            await handle.close()
        assert sorted(painter.batches) == [[b"job0"], [b"job1"], [b"job2"]]  # retries alone
    finally:
        await queue.close()


async def test_embedded_close_hands_every_job_of_the_batch_back(tmp_path: Path) -> None:
    queue = open_queue(None, data_dir=tmp_path)  # fill the line before anything paints
    await queue.start()
    ids = [(await queue.submit(request(user=u, content=b"job%d" % u)))[0] for u in (1, 2)]
    await queue.close()
    painter = BatchingPainter(batch=2, steps=500, scales=1, step_s=0.02)
    queue = open_queue(None, painter=painter, data_dir=tmp_path, shutdown_grace_s=0.2)
    await queue.start()
    await asyncio.gather(*(wait_for_progress(queue, job_id) for job_id in ids))
    await queue.close()  # the bot stopping: both are interrupted after the grace period
    assert painter.batches == [[b"job1", b"job2"]]

    queue = open_queue(None, painter=BatchingPainter(batch=2), data_dir=tmp_path)
    await queue.start()
    try:
        assert await delivered_once(queue, ids) == {ids[0]: 1, ids[1]: 1}  # no try was counted
    finally:
        await queue.close()


async def test_redis_stop_hands_every_job_of_the_batch_back(redis_server: RedisServer) -> None:
    queue = open_queue(redis_server.url)
    await queue.start()
    try:
        ids = [(await queue.submit(request(user=u, content=b"job%d" % u)))[0] for u in (1, 2)]
        config = WorkerConfig(url=redis_server.url, poll_s=0.05)
        painter = BatchingPainter(batch=2, steps=500, scales=1, step_s=0.02)
        handle = await start_worker_task(config, painter)
        await asyncio.gather(*(wait_for_progress(queue, job_id) for job_id in ids))
        await handle.close()  # a stop with no grace
        assert painter.batches == [[b"job1", b"job2"]]
        for job_id in ids:
            job = await queue.get(job_id)
            assert job is not None and job.state == JobState.QUEUED and job.attempts == 0
        handle = await start_worker_task(config, BatchingPainter(batch=2))
        try:
            assert await delivered_once(queue, ids) == {ids[0]: 1, ids[1]: 1}
        finally:
            await handle.close()
    finally:
        await queue.close()
