"""Redis backend, worker side: the arq task that paints one job, and the arq Worker around it.

Retries are arq's: a job stays in `arq:queue` until finished, and when a worker dies its
`arq:in-progress:<id>` key expires and another worker (or this one, restarted) runs it again with
`job_try + 1`. Two settings make that fit long GPU jobs: the in-progress key is a short lease
(`lease_s`) that the task renews while it paints, so a dead worker's job comes back within
seconds rather than after the job timeout; and arq may try one more time than `max_attempts`,
so that try can report the job as failed (`worker_died`) instead of arq dropping it silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, retry_key_prefix
from arq.worker import Worker, func

from engine.observability import metrics
from engine.queue import redis_store as rs
from engine.queue.codec import decode_request, encode_event
from engine.queue.limits import QueueLimits
from engine.queue.redis_backend import DOWN_ERRORS, connect
from engine.queue.seam import JobEvent, JobState, Painter, PaintProgress, paint, progress_event

log = logging.getLogger(__name__)


@dataclass
class WorkerConfig:
    url: str
    limits: QueueLimits = field(default_factory=QueueLimits)
    lease_s: float = 10.0  # a dead worker's job is retried this long after it died
    job_timeout_s: float = 3600.0
    grace_s: float = 30.0  # on SIGTERM: time the running job gets to finish
    poll_s: float = 0.2
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


class PaintTask:
    """The arq function `paint(ctx, job_id)`: runs the painter in a thread, streams its events."""

    def __init__(self, config: WorkerConfig, painter: Painter) -> None:
        self.config = config
        self.painter = painter
        self.worker: Worker | None = None
        self._scripts: dict[str, Any] = {}

    def scripts(self, redis: Any) -> dict[str, Any]:
        if not self._scripts:
            for name in ("START", "FINISH", "REQUEUE"):
                self._scripts[name] = redis.register_script(getattr(rs, name))
        return self._scripts

    async def run(self, ctx: dict[str, Any], job_id: str) -> None:
        redis: Any = ctx["redis"]  # Any: redis-py's async stubs type replies as `T | Awaitable[T]`
        scripts = self.scripts(redis)
        job_try: int = ctx["job_try"]
        key = rs.job_key(job_id)
        state, user_id, request_b, created = await redis.hmget(
            key, ["state", "user_id", "request", "created_at"]
        )
        if state is None or state.decode() not in (JobState.QUEUED, JobState.RUNNING):
            return  # cancelled or forgotten before it started
        if job_try > self.config.limits.max_attempts:
            log.warning("job %s: its worker died %d times; giving up", job_id, job_try - 1)
            await self._finish(redis, job_id, user_id, JobState.FAILED, reason="worker_died")
            return
        now = time.time()
        started = encode_event(JobEvent(job_id, "started", elapsed_s=0.0))
        keys = [
            key,
            rs.QUEUED,
            rs.ARQ_QUEUE,
            rs.active_key(user_id.decode()),
            rs.LINE,
            rs.events_key(job_id),
            rs.RUNNING,
        ]
        if not await scripts["START"](keys=keys, args=[job_id, now, job_try, started]):
            return
        wait_s = now - float(created)
        await redis.lpush(rs.WAITS, round(wait_s, 3))
        await redis.ltrim(rs.WAITS, 0, 49)
        metrics.JOBS.labels(state="running").inc()
        metrics.WAIT_SECONDS.observe(wait_s)
        metrics.RUNNING_JOBS.inc()
        try:
            await self._paint(redis, job_id, user_id, decode_request(request_b), now)
        finally:
            metrics.RUNNING_JOBS.dec()

    async def _paint(
        self, redis: Any, job_id: str, user_id: bytes, request: Any, started: float
    ) -> None:
        loop = asyncio.get_running_loop()
        cancel = threading.Event()
        outbox: asyncio.Queue[JobEvent | None] = asyncio.Queue()

        def progress(p: PaintProgress) -> None:
            event = progress_event(job_id, p, started)
            loop.call_soon_threadsafe(outbox.put_nowait, event)

        publisher = asyncio.create_task(self._publish(redis, job_id, outbox))
        lease = asyncio.create_task(self._renew_lease(redis, job_id))
        painting = asyncio.ensure_future(
            asyncio.to_thread(paint, self.painter, request, progress, cancel, job_id)
        )
        try:
            try:
                state, result, reason = await asyncio.shield(painting)
            except asyncio.CancelledError:
                # arq cancelled us: a user abort, a shutdown past its grace, or the job timeout.
                cancel.set()
                with contextlib.suppress(BaseException):
                    await painting
                await self._after_interrupt(redis, job_id, user_id, started)
                raise
        finally:
            lease.cancel()
            outbox.put_nowait(None)
            with contextlib.suppress(BaseException):
                await publisher
        await self._finish(
            redis, job_id, user_id, state, result=result, reason=reason, started=started
        )

    async def _after_interrupt(
        self, redis: Any, job_id: str, user_id: bytes, started: float
    ) -> None:
        key = rs.job_key(job_id)
        requested = await redis.hget(key, "cancel_requested")
        worker = self.worker
        if requested is not None or not await redis.exists(key):
            await self._finish(redis, job_id, user_id, JobState.CANCELLED, started=started)
        elif worker is not None and not worker.allow_pick_jobs:
            # shutting down: back in line; arq runs it again, and this try does not count
            score = await redis.zscore(rs.ARQ_QUEUE, job_id) or time.time() * 1000
            await self.scripts(redis)["REQUEUE"](
                keys=[key, rs.QUEUED, rs.RUNNING, rs.LINE], args=[job_id, int(score)]
            )
            await redis.decr(retry_key_prefix + job_id)
            log.info("job %s handed back to the queue on shutdown", job_id)
        else:
            await self._finish(redis, job_id, user_id, JobState.FAILED, reason="timeout")

    async def _finish(
        self,
        redis: Any,
        job_id: str,
        user_id: bytes | None,
        state: JobState,
        *,
        result: bytes | None = None,
        reason: str | None = None,
        started: float | None = None,
    ) -> None:
        """Record the outcome; retried while Redis is away, because the result is the point."""
        now = time.time()
        run_s = now - started if started else None
        if state == JobState.DONE:
            event = JobEvent(job_id, "done", elapsed_s=round(run_s or 0, 3))
        elif state == JobState.FAILED:
            event = JobEvent(job_id, "failed", reason=reason)
        else:
            event = JobEvent(job_id, "cancelled")
        keys = [
            rs.job_key(job_id),
            rs.active_key((user_id or b"").decode()),
            rs.RUNNING,
            rs.events_key(job_id),
            rs.day_key(now),  # counted in the same script, before followers see the event
            rs.RUNS,
        ]
        done_run_s = round(run_s, 3) if state == JobState.DONE and run_s is not None else ""
        args = [
            job_id,
            state.value,
            now,
            reason or "",
            result or b"",
            encode_event(event),
            done_run_s,
        ]
        delay = 0.2
        while True:
            try:
                if await self.scripts(redis)["FINISH"](keys=keys, args=args):
                    metrics.JOBS.labels(state=state.value).inc()
                    if state == JobState.DONE and run_s is not None:
                        metrics.RUN_SECONDS.observe(run_s)
                return
            except DOWN_ERRORS:
                log.warning("Redis unreachable while saving job %s; retrying", job_id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _publish(
        self, redis: Any, job_id: str, outbox: asyncio.Queue[JobEvent | None]
    ) -> None:
        """One writer per job keeps progress events in order; lost ones are only progress."""
        while (event := await outbox.get()) is not None:
            with contextlib.suppress(*DOWN_ERRORS):
                await redis.xadd(
                    rs.events_key(job_id),
                    {"e": encode_event(event)},
                    maxlen=rs.EVENTS_MAXLEN,
                    approximate=True,
                )

    async def _renew_lease(self, redis: Any, job_id: str) -> None:
        lease_ms = int(self.config.lease_s * 1000)
        while True:
            await asyncio.sleep(self.config.lease_s / 3)
            with contextlib.suppress(*DOWN_ERRORS):
                await redis.pexpire(in_progress_key_prefix + job_id, lease_ms)


async def _heartbeat(redis: Any, name: str) -> None:
    """Tell `stats()` this worker is alive, and keep the queue-length gauge of /metrics fresh."""
    while True:
        with contextlib.suppress(*DOWN_ERRORS):
            await redis.zadd(rs.WORKERS, {name: time.time()})
            metrics.QUEUE_LENGTH.set(await redis.zcard(rs.QUEUED))
        await asyncio.sleep(5)


def build_worker(
    config: WorkerConfig, painter: Painter, *, handle_signals: bool = True
) -> tuple[Worker, ArqRedis]:
    """An arq Worker painting one job at a time with `painter` (call inside a running loop)."""
    task = PaintTask(config, painter)
    redis = connect(config.url)
    beat: dict[str, asyncio.Task[None]] = {}

    async def on_startup(ctx: dict[str, Any]) -> None:
        beat["task"] = asyncio.create_task(_heartbeat(ctx["redis"], config.name))

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        if "task" in beat:
            beat["task"].cancel()
        with contextlib.suppress(*DOWN_ERRORS):
            await ctx["redis"].zrem(rs.WORKERS, config.name)

    worker = Worker(
        functions=[func(task.run, name=rs.TASK)],
        redis_pool=redis,
        max_jobs=1,
        job_timeout=config.job_timeout_s,
        keep_result=0,
        poll_delay=config.poll_s,
        max_tries=config.limits.max_attempts + 3,  # our task reports worker_died itself
        allow_abort_jobs=True,
        retry_jobs=True,
        handle_signals=handle_signals,
        job_completion_wait=max(1, int(config.grace_s)),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
    )
    worker.in_progress_timeout_s = config.lease_s  # a lease the task renews, see module doc
    task.worker = worker
    return worker, redis


@dataclass
class WorkerHandle:
    """An arq worker running as a task in this loop (tests and benches)."""

    worker: Worker
    task: asyncio.Task[None]

    async def close(self) -> None:
        """Like SIGTERM with no grace: a running job is handed back to the queue."""
        self.worker.allow_pick_jobs = False
        running = list(self.worker.tasks.values())
        for task in [self.task, *running]:
            task.cancel()
        await asyncio.gather(self.task, *running, return_exceptions=True)
        self.worker.tasks.clear()
        await self.worker.close()


async def start_worker_task(config: WorkerConfig, painter: Painter) -> WorkerHandle:
    worker, _ = build_worker(config, painter, handle_signals=False)
    return WorkerHandle(worker, asyncio.create_task(worker.async_run()))
