"""Embedded backend: one SQLite file in the data dir plus one painter thread in the bot process.

Why this shape: no server to install, and SQLite in WAL mode survives a kill -9 (a committed job is
on disk; `synchronous=NORMAL` only risks the last commits on power loss, not on a process crash).
Every SQLite call runs off the event loop: the async side has one executor thread with its own
connection, the painter thread has another, so the bot's loop never waits on disk or on the GPU.
A lock file makes sure only one live process owns the file, which is what lets `start()` treat
every RUNNING job it finds as orphaned by a dead process.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from engine.observability import metrics
from engine.queue.codec import decode_request, encode_request, strip_request
from engine.queue.limits import QueueLimits
from engine.queue.policy import RunTimes, eta_s, fair_order
from engine.queue.seam import (
    TERMINAL_STATES,
    Job,
    JobEvent,
    JobRequest,
    JobState,
    Painter,
    PaintProgress,
    QueueFull,
    QueueStats,
    QueueUnavailable,
    TooManyActiveJobs,
    paint,
    progress_event,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL,
    chat_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    request BLOB,               -- full request with pictures; NULL once purged
    summary BLOB NOT NULL,      -- the request without pictures, kept for the record
    result BLOB,
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
CREATE INDEX IF NOT EXISTS jobs_user ON jobs (user_id, state);
CREATE INDEX IF NOT EXISTS jobs_delivered ON jobs (delivered);
"""
ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)
KEEP_RECORDS_S = 2 * 86400  # metadata of delivered jobs, for stats


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def _job_from_row(row: sqlite3.Row | tuple[Any, ...], with_result: bool = True) -> Job:
    (job_id, state, created, started, finished, attempts, error, request, summary, result) = row
    return Job(
        id=job_id,
        request=decode_request(request if request is not None else summary),
        state=JobState(state),
        created_at=created,
        started_at=started,
        finished_at=finished,
        attempts=attempts,
        error=error,
        result=result if with_result else None,
    )


JOB_COLUMNS = (
    "id, state, created_at, started_at, finished_at, attempts, error, request, summary, result"
)


@dataclass(eq=False)
class _Subscriber:
    queue: asyncio.Queue[JobEvent] = field(default_factory=asyncio.Queue)
    last_position: int | None = None


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
    ) -> None:
        self.path = Path(path)
        self.painter = painter
        self.limits = limits or QueueLimits()
        self.retention_s = retention_s
        self.shutdown_grace_s = shutdown_grace_s
        self.run_times = RunTimes()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._db: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None  # used only on the executor thread
        self._lock_fd: int | None = None
        self._subs: dict[str, set[_Subscriber]] = {}
        self._last_progress: dict[str, JobEvent] = {}
        self._cancels: dict[str, threading.Event] = {}  # running job -> its cancel flag
        self._user_cancelled: set[str] = set()
        self._cancels_lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._interrupting = threading.Event()
        self._worker: threading.Thread | None = None
        self._refresh_pending = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_purge = 0.0

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise QueueUnavailable(f"another process is using the queue at {self.path}") from None
        self._db = ThreadPoolExecutor(1, thread_name_prefix="orsay-queue-db")
        recent = await self._run(self._open_and_recover)
        self.run_times = RunTimes(recent)
        if self.painter is not None:
            self._worker = threading.Thread(target=self._work, name="orsay-painter", daemon=True)
            self._worker.start()
        self._schedule_refresh()

    async def close(self) -> None:
        """Stop taking jobs; give the running one `shutdown_grace_s` to finish, then interrupt it
        and put it back in line (it runs again on the next start, without costing an attempt)."""
        self._stopping.set()
        self._wake.set()
        worker = self._worker
        if worker is not None:
            await asyncio.to_thread(worker.join, self.shutdown_grace_s)
            if worker.is_alive():
                self._interrupting.set()
                with self._cancels_lock:
                    for event in self._cancels.values():
                        event.set()
                await asyncio.to_thread(worker.join, 10.0)
        if self._db is not None:
            with contextlib.suppress(Exception):
                await self._run(self._close_db)
            self._db.shutdown(wait=True)
            self._db = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # -- the seam --------------------------------------------------------------------------

    async def submit(self, request: JobRequest) -> tuple[str, int]:
        job_id, position = await self._run(self._db_submit, request)
        metrics.JOBS.labels(state="queued").inc()
        self._wake.set()
        self._schedule_refresh()
        return job_id, position

    async def position(self, job_id: str) -> int | None:
        order = await self._run(self._db_order)
        return order.index(job_id) + 1 if job_id in order else None

    async def cancel(self, job_id: str) -> bool:
        outcome = await self._run(self._db_cancel, job_id)
        if outcome == "queued":
            metrics.JOBS.labels(state="cancelled").inc()
            self._publish(JobEvent(job_id, "cancelled"))
            self._schedule_refresh()
        return outcome is not None

    async def events(self, job_id: str) -> AsyncIterator[JobEvent]:
        sub = _Subscriber()
        self._subs.setdefault(job_id, set()).add(sub)
        try:
            job = await self.get(job_id)
            if job is None:
                return
            replay = await self._replay(job)
            for event in replay:
                if event.kind == "queued":
                    sub.last_position = event.position
                yield event
            if replay[-1].terminal:
                return
            running = job.state == JobState.RUNNING
            while True:
                event = await sub.queue.get()
                if running and event.kind in ("queued", "position", "started"):
                    continue  # already covered by the replay
                running = running or event.kind == "started"
                yield event
                if event.terminal:
                    return
        finally:
            subs = self._subs.get(job_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[job_id]

    async def get(self, job_id: str) -> Job | None:
        return await self._run(self._db_get, job_id)

    async def active_jobs(self, user_id: int) -> list[Job]:
        return await self._run(
            self._db_jobs, "user_id = ? AND state IN (?, ?) ORDER BY seq", (user_id, *ACTIVE)
        )

    async def undelivered(self) -> list[Job]:
        return await self._run(self._db_jobs, "delivered = 0 ORDER BY seq", ())

    async def acknowledge(self, job_id: str) -> None:
        await self._run(self._db_acknowledge, job_id)

    async def forget(self, user_id: int) -> None:
        ids, queued_ids = await self._run(self._db_forget, user_id)
        for job_id in ids:
            self._publish(JobEvent(job_id, "cancelled"))
        if queued_ids:
            self._schedule_refresh()

    async def stats(self) -> QueueStats:
        counts = await self._run(self._db_stats)
        alive = int(self._worker is not None and self._worker.is_alive())
        return QueueStats(**counts, mean_run_s=self.run_times.mean(), workers_alive=alive)

    async def healthy(self) -> bool:
        try:
            await self._run(lambda: self._db_conn().execute("SELECT 1").fetchone())
        except Exception:
            return False
        return self.painter is None or (self._worker is not None and self._worker.is_alive())

    # -- event plumbing (on the loop) ------------------------------------------------------

    def _publish(self, event: JobEvent) -> None:
        if event.kind == "progress":
            self._last_progress[event.job_id] = event
        elif event.terminal:
            self._last_progress.pop(event.job_id, None)
        for sub in self._subs.get(event.job_id, ()):
            sub.queue.put_nowait(event)

    def _publish_threadsafe(self, event: JobEvent) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._publish, event)

    def _schedule_refresh(self) -> None:
        """Tell followers of waiting jobs that their place in line moved; coalesced, so a burst of
        submits costs one query."""
        loop = self._loop
        if loop is None or self._refresh_pending or loop.is_closed():
            return
        self._refresh_pending = True
        loop.call_soon_threadsafe(self._start_refresh)

    def _start_refresh(self) -> None:
        task = asyncio.get_running_loop().create_task(self._refresh_positions())
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _refresh_positions(self) -> None:
        try:
            if not self._subs or self._db is None:
                return
            order = await self._run(self._db_order)
        except Exception:
            log.exception("position refresh failed")
            return
        finally:
            self._refresh_pending = False
        run_s = self.run_times.estimate()
        for position, job_id in enumerate(order, start=1):
            for sub in self._subs.get(job_id, ()):
                if sub.last_position is not None and sub.last_position != position:
                    sub.last_position = position
                    eta = eta_s(position, run_s)
                    sub.queue.put_nowait(JobEvent(job_id, "position", position=position, eta_s=eta))

    async def _replay(self, job: Job) -> list[JobEvent]:
        if job.state == JobState.QUEUED:
            position = await self.position(job.id) or 1
            eta = eta_s(position, self.run_times.estimate())
            return [JobEvent(job.id, "queued", position=position, eta_s=eta)]
        if job.state == JobState.RUNNING:
            elapsed = time.time() - (job.started_at or time.time())
            events = [JobEvent(job.id, "started", elapsed_s=round(elapsed, 3))]
            if job.id in self._last_progress:
                events.append(self._last_progress[job.id])
            return events
        return [_terminal_event(job)]

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._db is None or self._loop is None:
            raise QueueUnavailable("the queue is not started")
        return await self._loop.run_in_executor(self._db, fn, *args)

    # -- SQLite, on the executor thread ----------------------------------------------------

    def _db_conn(self) -> sqlite3.Connection:
        assert self._conn is not None
        return self._conn

    def _open_and_recover(self) -> list[float]:
        """Open the file and hand back jobs orphaned by a dead process: RUNNING means the process
        died mid-job (only one process owns the file), so the job goes back in line, or fails as
        `worker_died` once it has used all its attempts."""
        self._conn = conn = _connect(self.path)
        conn.executescript(SCHEMA)
        now = time.time()
        with _transaction(conn):
            failed = conn.execute(
                "UPDATE jobs SET state = 'failed', error = 'worker_died', finished_at = ?"
                " WHERE state = 'running' AND attempts >= ?",
                (now, self.limits.max_attempts),
            ).rowcount
            requeued = conn.execute(
                "UPDATE jobs SET state = 'queued', started_at = NULL WHERE state = 'running'"
            ).rowcount
        if failed or requeued:
            log.warning("recovered %d interrupted job(s), %d failed for good", requeued, failed)
            metrics.JOBS.labels(state="failed").inc(failed)
        self._purge(conn, now)
        self._update_gauges(conn)
        rows = conn.execute(
            "SELECT finished_at - started_at FROM jobs WHERE state = 'done'"
            " AND started_at IS NOT NULL ORDER BY finished_at DESC LIMIT 20"
        ).fetchall()
        return [r[0] for r in reversed(rows)]

    def _close_db(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _db_submit(self, request: JobRequest) -> tuple[str, int]:
        conn = self._db_conn()
        job_id = uuid.uuid4().hex
        with _transaction(conn):
            active = conn.execute(
                "SELECT COUNT(*) FROM jobs WHERE user_id = ? AND state IN (?, ?)",
                (request.user_id, *ACTIVE),
            ).fetchone()[0]
            if active >= self.limits.per_user:
                raise TooManyActiveJobs(self.limits.per_user)
            queued = conn.execute("SELECT COUNT(*) FROM jobs WHERE state = 'queued'").fetchone()[0]
            if queued >= self.limits.max_queue:
                raise QueueFull(self.limits.max_queue)
            conn.execute(
                "INSERT INTO jobs (id, user_id, chat_id, state, created_at, request, summary)"
                " VALUES (?, ?, ?, 'queued', ?, ?, ?)",
                (
                    job_id,
                    request.user_id,
                    request.chat_id,
                    time.time(),
                    encode_request(request),
                    encode_request(strip_request(request)),
                ),
            )
            order = self._order(conn)
        metrics.QUEUE_LENGTH.set(queued + 1)
        return job_id, order.index(job_id) + 1

    def _order(self, conn: sqlite3.Connection) -> list[str]:
        rows = conn.execute("SELECT id, user_id FROM jobs WHERE state = 'queued' ORDER BY seq")
        return fair_order(rows.fetchall())

    def _db_order(self) -> list[str]:
        return self._order(self._db_conn())

    def _db_cancel(self, job_id: str) -> str | None:
        conn = self._db_conn()
        with _transaction(conn):
            if conn.execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = ?"
                " WHERE id = ? AND state = 'queued'",
                (time.time(), job_id),
            ).rowcount:
                return "queued"
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None or row[0] != JobState.RUNNING:
            return None
        with self._cancels_lock:
            event = self._cancels.get(job_id)
            if event is None:
                return None
            self._user_cancelled.add(job_id)
            event.set()  # the painter stops at its next step; the worker reports `cancelled`
        return "running"

    def _db_get(self, job_id: str) -> Job | None:
        row = (
            self._db_conn()
            .execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
            .fetchone()
        )
        return None if row is None else _job_from_row(row)

    def _db_jobs(self, where: str, params: tuple[Any, ...]) -> list[Job]:
        rows = self._db_conn().execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where}", params)
        return [_job_from_row(row) for row in rows.fetchall()]

    def _db_acknowledge(self, job_id: str) -> None:
        conn = self._db_conn()
        states = tuple(s.value for s in TERMINAL_STATES)
        conn.execute(
            "UPDATE jobs SET delivered = 1 WHERE id = ? AND state IN (?, ?, ?)", (job_id, *states)
        )
        now = time.time()
        if self.retention_s <= 0:
            conn.execute(
                "UPDATE jobs SET request = NULL, result = NULL WHERE id = ? AND delivered = 1",
                (job_id,),
            )
        elif now - self._last_purge > 60:
            self._purge(conn, now)

    def _purge(self, conn: sqlite3.Connection, now: float) -> None:
        """Delete pictures of delivered jobs past retention, and old records altogether."""
        self._last_purge = now
        conn.execute(
            "UPDATE jobs SET request = NULL, result = NULL"
            " WHERE delivered = 1 AND request IS NOT NULL AND finished_at < ?",
            (now - self.retention_s,),
        )
        conn.execute(
            "DELETE FROM jobs WHERE delivered = 1 AND finished_at < ?",
            (now - max(self.retention_s, KEEP_RECORDS_S),),
        )

    def _db_forget(self, user_id: int) -> tuple[list[str], list[str]]:
        conn = self._db_conn()
        with _transaction(conn):
            rows = conn.execute(
                "SELECT id, state FROM jobs WHERE user_id = ? AND state IN (?, ?)",
                (user_id, *ACTIVE),
            ).fetchall()
            conn.execute("DELETE FROM jobs WHERE user_id = ?", (user_id,))
        with self._cancels_lock:
            for job_id, _ in rows:
                if job_id in self._cancels:
                    self._user_cancelled.add(job_id)
                    self._cancels[job_id].set()
        self._update_gauges(conn)
        return [r[0] for r in rows], [r[0] for r in rows if r[1] == JobState.QUEUED]

    def _db_stats(self) -> dict[str, Any]:
        conn = self._db_conn()
        midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        counts = dict(
            conn.execute(
                "SELECT state, COUNT(*) FROM jobs WHERE state IN (?, ?) GROUP BY state", ACTIVE
            ).fetchall()
        )
        today = dict(
            conn.execute(
                "SELECT state, COUNT(*) FROM jobs WHERE finished_at >= ? GROUP BY state",
                (midnight,),
            ).fetchall()
        )
        waits = conn.execute(
            "SELECT AVG(w) FROM (SELECT started_at - created_at AS w FROM jobs"
            " WHERE started_at IS NOT NULL ORDER BY started_at DESC LIMIT 50)"
        ).fetchone()[0]
        return {
            "queued": counts.get("queued", 0),
            "running": counts.get("running", 0),
            "done_today": today.get("done", 0),
            "failed_today": today.get("failed", 0),
            "mean_wait_s": waits,
        }

    def _update_gauges(self, conn: sqlite3.Connection) -> None:
        counts = dict(
            conn.execute(
                "SELECT state, COUNT(*) FROM jobs WHERE state IN (?, ?) GROUP BY state", ACTIVE
            ).fetchall()
        )
        metrics.QUEUE_LENGTH.set(counts.get("queued", 0))
        metrics.RUNNING_JOBS.set(counts.get("running", 0))

    # -- the painter thread ----------------------------------------------------------------

    def _work(self) -> None:
        conn = _connect(self.path)
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                claimed = self._claim(conn)
                if claimed is None:
                    self._wake.wait(0.5)
                    continue
                self._paint(conn, *claimed)
        except Exception:
            log.exception("painter thread crashed")
        finally:
            conn.close()

    def _claim(self, conn: sqlite3.Connection) -> tuple[str, JobRequest, float] | None:
        now = time.time()
        with _transaction(conn):
            order = self._order(conn)
            if not order:
                return None
            job_id = order[0]
            request, created = conn.execute(
                "SELECT request, created_at FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
            conn.execute(
                "UPDATE jobs SET state = 'running', started_at = ?, attempts = attempts + 1"
                " WHERE id = ?",
                (now, job_id),
            )
            with self._cancels_lock:  # registered before commit: cancel() always finds it
                self._cancels[job_id] = threading.Event()
        metrics.JOBS.labels(state="running").inc()
        metrics.WAIT_SECONDS.observe(now - created)
        self._update_gauges(conn)
        self._schedule_refresh_threadsafe()
        return job_id, decode_request(request), now

    def _schedule_refresh_threadsafe(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._schedule_refresh)

    def _paint(
        self, conn: sqlite3.Connection, job_id: str, request: JobRequest, started: float
    ) -> None:
        cancel = self._cancels[job_id]
        self._publish_threadsafe(JobEvent(job_id, "started", elapsed_s=0.0))

        def progress(p: PaintProgress) -> None:
            self._publish_threadsafe(progress_event(job_id, p, started))

        assert self.painter is not None
        state, result, reason = paint(self.painter, request, progress, cancel, job_id)
        with self._cancels_lock:
            self._cancels.pop(job_id, None)
            user_cancelled = job_id in self._user_cancelled
            self._user_cancelled.discard(job_id)
        if state == JobState.CANCELLED and not user_cancelled and self._interrupting.is_set():
            conn.execute(  # shutdown, not the user: back in line, attempt not counted
                "UPDATE jobs SET state = 'queued', started_at = NULL, attempts = attempts - 1"
                " WHERE id = ? AND state = 'running'",
                (job_id,),
            )
            self._update_gauges(conn)
            return
        finished = time.time()
        conn.execute(
            "UPDATE jobs SET state = ?, finished_at = ?, result = ?, error = ?"
            " WHERE id = ? AND state = 'running'",
            (state.value, finished, result, reason, job_id),
        )
        metrics.JOBS.labels(state=state.value).inc()
        self._update_gauges(conn)
        if state == JobState.DONE:
            self.run_times.add(finished - started)
            metrics.RUN_SECONDS.observe(finished - started)
            event = JobEvent(job_id, "done", result=result, elapsed_s=round(finished - started, 3))
        elif state == JobState.FAILED:
            event = JobEvent(job_id, "failed", reason=reason)
        else:
            event = JobEvent(job_id, "cancelled")
        self._publish_threadsafe(event)


def _terminal_event(job: Job) -> JobEvent:
    if job.state == JobState.DONE:
        elapsed = (job.finished_at or 0) - (job.started_at or job.finished_at or 0)
        return JobEvent(job.id, "done", result=job.result, elapsed_s=round(elapsed, 3))
    if job.state == JobState.FAILED:
        return JobEvent(job.id, "failed", reason=job.error or "painter_error")
    return JobEvent(job.id, "cancelled")


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Any:
    """BEGIN IMMEDIATE so a read-then-write (limits check, claim) cannot interleave with another."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
