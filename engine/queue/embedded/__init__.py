"""Embedded backend: one SQLite file in the data dir plus one painter thread in the bot process.

    store.py   the jobs table (SQLite DAO)
    schema.py  its tables as numbered migrations (PRAGMA user_version)
    lockfile.py  the lock file: one process owns the SQLite file
    events.py  pub/sub with replay, place-in-line updates
    worker.py  the painter thread
    here       `SqliteQueue`, the `JobQueue` façade tying them together

Every SQLite call runs off the event loop: the async side has one executor thread with its own
connection, the painter thread has another, so the bot's loop never waits on disk or on the GPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from engine.observability import metrics
from engine.queue.embedded.events import EventHub
from engine.queue.embedded.lockfile import LockFile
from engine.queue.embedded.store import SqliteJobStore
from engine.queue.embedded.worker import PainterThread
from engine.queue.policy import RunTimes
from engine.queue.seam import (
    JobEvent,
    JobRecord,
    JobRequest,
    JobState,
    Painter,
    QueueStats,
    QueueUnavailable,
)
from engine.settings import QueueLimits

T = TypeVar("T")


class SqliteQueue:
    """`JobQueue` on a SQLite file; paints in a thread of this process when given a painter."""

    def __init__(
        self,
        path: Path,
        *,
        painter: Painter | None = None,
        limits: QueueLimits | None = None,
        retention_s: float = 0.0,
        shutdown_grace_s: float = 30.0,
        job_timeout_s: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.painter = painter
        self.limits = limits or QueueLimits()
        self.retention_s = retention_s
        self.shutdown_grace_s = shutdown_grace_s
        self.job_timeout_s = job_timeout_s
        self.run_times = RunTimes()
        self._lock = LockFile(Path(f"{self.path}.lock"))
        self._db: ThreadPoolExecutor | None = None
        self._store: SqliteJobStore | None = None  # used only on the executor thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self.hub = EventHub(self._order, self.get, lambda: self.run_times)
        self._painter: PainterThread | None = None

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._lock.acquire()
        self._db = ThreadPoolExecutor(1, thread_name_prefix="orsay-queue-db")
        self.hub.bind(self._loop)

        def open_store() -> list[float]:
            self._store = SqliteJobStore(self.path, self.limits, self.retention_s)
            return self._store.recover()

        self.run_times = RunTimes(await self._run(open_store))
        if self.painter is not None:
            self._painter = PainterThread(
                self.path,
                self.painter,
                self.hub,
                self.run_times,
                limits=self.limits,
                job_timeout_s=self.job_timeout_s,
            )
            self._painter.start()
        self.hub.line_moved()

    async def close(self) -> None:
        if self._painter is not None:
            await asyncio.to_thread(self._painter.stop, self.shutdown_grace_s)
        if self._db is not None:
            store, self._store = self._store, None
            if store is not None:
                await asyncio.get_running_loop().run_in_executor(self._db, store.close)
            self._db.shutdown(wait=True)
            self._db = None
        self._lock.release()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._db is None or self._loop is None:
            raise QueueUnavailable("the queue is not started")
        return await self._loop.run_in_executor(self._db, fn, *args)

    def _s(self) -> SqliteJobStore:
        assert self._store is not None  # on the executor thread, between start and close
        return self._store

    async def _order(self) -> list[str]:
        return await self._run(lambda: self._s().order())

    # -- the seam --------------------------------------------------------------------------

    async def submit(self, request: JobRequest, *, key: str | None = None) -> tuple[str, int]:
        job_id, position, created = await self._run(lambda: self._s().submit(request, key))
        if not created:
            return job_id, position
        metrics.JOBS.labels(state="queued").inc()
        if self._painter is not None:
            self._painter.wake()
        self.hub.line_moved()
        return job_id, position

    async def position(self, job_id: str) -> int | None:
        order = await self._order()
        return order.index(job_id) + 1 if job_id in order else None

    async def cancel(self, job_id: str) -> bool:
        state = await self._run(lambda: self._s().cancel_queued(job_id))
        if state == JobState.CANCELLED:
            metrics.JOBS.labels(state="cancelled").inc()
            self.hub.publish(JobEvent(job_id, "cancelled"))
            self.hub.line_moved()
            return True
        # running: the painter stops at its next step and reports `cancelled` itself
        return state == JobState.RUNNING and self._interrupt(job_id)

    def _interrupt(self, job_id: str) -> bool:
        return self._painter is not None and self._painter.interrupt(job_id, "user")

    def events(self, job_id: str) -> AsyncIterator[JobEvent]:
        return self.hub.follow(job_id)

    async def get(self, job_id: str) -> JobRecord | None:
        return await self._run(lambda: self._s().get(job_id))

    async def active_jobs(self, user_id: int) -> list[JobRecord]:
        return await self._run(lambda: self._s().active_jobs(user_id))

    async def undelivered(self) -> list[JobRecord]:
        return await self._run(lambda: self._s().undelivered())

    async def acknowledge(self, job_id: str) -> None:
        await self._run(lambda: self._s().acknowledge(job_id))

    async def forget(self, user_id: int) -> None:
        gone = await self._run(lambda: self._s().forget(user_id))
        for job_id, state in gone:
            if state == JobState.RUNNING:
                self._interrupt(job_id)
            self.hub.publish(JobEvent(job_id, "cancelled"))
        if any(state == JobState.QUEUED for _, state in gone):
            self.hub.line_moved()

    async def stats(self) -> QueueStats:
        counts = await self._run(lambda: self._s().stats())
        alive = int(self._painter is not None and self._painter.alive())
        return QueueStats(**counts, mean_run_s=self.run_times.mean(), workers_alive=alive)

    async def healthy(self) -> bool:
        try:
            await self._run(lambda: self._s().conn.execute("SELECT 1").fetchone())
        except Exception:
            return False
        return self.painter is None or (self._painter is not None and self._painter.alive())


__all__ = ["SqliteQueue"]
