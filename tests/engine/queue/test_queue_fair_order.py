"""The fair-order rule is written once, engine.queue.policy.fair_order, and both backends are
checked against it: the embedded queue sorts its waiting jobs with it, Redis keeps it in the
scores of its line (engine/queue/redis_backend/lua/line.lua). Each test gives the rule the jobs
still waiting, in submit order, and compares its answer with the backend's positions."""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Awaitable, Callable

from engine.queue import JobQueue, JobState, QueueLimits
from engine.queue.embedded import SqliteQueue
from engine.queue.policy import fair_order
from tests.doubles.batch_painters import BatchingPainter
from tests.doubles.queue_helpers import QueueFactory, request
from tests.engine.queue.test_queue_batches import held, job, submit_all

Waiting = list[tuple[str, int]]  # (job id, user id) of the waiting jobs, in submit order


async def line(queue: JobQueue, waiting: Waiting) -> list[str]:
    """The waiting jobs in the order of the backend's positions."""
    places = {job_id: await queue.position(job_id) for job_id, _ in waiting}
    assert sorted(p or 0 for p in places.values()) == list(range(1, len(waiting) + 1)), places
    return sorted(places, key=lambda job_id: places[job_id] or 0)


async def test_the_line_follows_the_rule_after_every_step(make_queue: QueueFactory) -> None:
    """Sixty seeded steps of submits, cancels and /forget by four users."""
    most = 4
    queue = await make_queue(limits=QueueLimits(per_user=most, max_queue=100))
    rng = random.Random(20)
    waiting: Waiting = []
    for _ in range(60):
        roll = rng.random()
        if waiting and roll < 0.3:
            job_id, _ = waiting.pop(rng.randrange(len(waiting)))
            assert await queue.cancel(job_id)
        elif waiting and roll < 0.35:
            user = rng.choice([user for _, user in waiting])
            await queue.forget(user)
            waiting = [(job_id, u) for job_id, u in waiting if u != user]
        else:
            user = rng.randrange(1, 5)
            if sum(u == user for _, u in waiting) == most:
                continue
            job_id, position = await queue.submit(request(user=user))
            waiting.append((job_id, user))
            assert position == fair_order(waiting).index(job_id) + 1
        assert await line(queue, waiting) == fair_order(waiting)


async def hand_back_a_batch(
    queue: JobQueue, painter: BatchingPainter, stop: Callable[[], Awaitable[None]]
) -> Waiting:
    """User 1's two jobs painted together in one batch while user 2's waits, then a shutdown
    with no grace hands the batch back to the line; the waiting jobs, in submit order."""
    await held(queue, painter)
    first, second, other = await submit_all(
        queue, [job(1, b"HOLD 1a"), job(1, b"1b"), job(2, b"2a", size=256)]
    )
    hold_first, painter.release = painter.release, threading.Event()
    hold_first.set()  # the first job ends; the batch 1a + 1b starts and holds
    async with asyncio.timeout(60):  # 20 s was too short on a 2-core machine running 4 suites
        while not painter.batches or painter.batches[-1] != [b"HOLD 1a", b"1b"]:
            await asyncio.sleep(0.02)
    stopping = asyncio.create_task(stop())
    await asyncio.sleep(0.3)  # the shutdown has set both jobs' cancel flags by now
    painter.release.set()
    await asyncio.wait_for(stopping, 30)
    return [(first, 1), (second, 1), (other, 2)]


async def test_a_batch_handed_back_takes_its_places_again(make_queue: QueueFactory) -> None:
    """The batch's jobs come back in submit order among their user's jobs, on Redis as in the
    embedded queue (Redis used to put each at its user's head, so 1b went back before 1a)."""
    painter = BatchingPainter(batch=2, steps=25, scales=1, step_s=0.02)
    limits = QueueLimits(per_user=3)
    if make_queue.backend == "redis":  # type: ignore[attr-defined]
        from engine.queue.redis_backend.worker import WorkerConfig, start_worker_task

        queue = await make_queue(limits=limits)
        config = WorkerConfig(url=queue.url, limits=limits, poll_s=0.05)  # type: ignore[attr-defined]
        worker = await start_worker_task(config, painter)
        waiting = await hand_back_a_batch(queue, painter, worker.close)
        reader = queue
    else:
        queue = await make_queue(painter=painter, limits=limits)
        assert isinstance(queue, SqliteQueue)
        queue.shutdown_grace_s = 0
        waiting = await hand_back_a_batch(queue, painter, queue.close)
        reader = SqliteQueue(queue.path, limits=limits)  # the bot started again, no painter
        await reader.start()
    try:
        assert await line(reader, waiting) == fair_order(waiting)
        for job_id, _ in waiting[:2]:
            record = await reader.get(job_id)
            assert record is not None and record.state == JobState.QUEUED
            assert record.attempts == 0  # a shutdown gives the try back
    finally:
        if reader is not queue:
            await reader.close()
