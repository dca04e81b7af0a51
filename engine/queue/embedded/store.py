"""The embedded queue's records: one SQLite file.

Why SQLite in WAL mode: no server to install, and it survives a kill -9 (a committed job is on disk;
`synchronous=NORMAL` only risks the last commits on power loss, not on a process crash). A
`SqliteJobStore` wraps one connection and is used by one thread only (the façade's executor thread,
or the painter thread with its own). The lock file (lockfile.py) makes sure only one live process
owns the file, which is what lets `recover()` treat every RUNNING job it finds as orphaned by a dead
process.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.observability import metrics
from engine.queue import blobs
from engine.queue.batches import Picker
from engine.queue.codec import decode_request, encode_request, strip_request
from engine.queue.embedded import schema
from engine.queue.lifecycle import WORKER_DIED, JobOutcome
from engine.queue.policy import fair_order
from engine.queue.seam import (
    TERMINAL_STATES,
    JobRecord,
    JobRequest,
    JobState,
    QueueFull,
    TooManyActiveJobs,
)
from engine.settings import QueueLimits

log = logging.getLogger(__name__)

KEEP_KEYS_S = 2 * 86400  # a key answers for its job this long (a replay comes within minutes)
# A blob lives while a job that still holds its pictures (request not NULL) refers to it.
DROP_BLOBS = (
    "DELETE FROM job_blobs WHERE job_id NOT IN (SELECT id FROM jobs WHERE request IS NOT NULL)",
    "DELETE FROM blobs WHERE sha256 NOT IN (SELECT sha256 FROM job_blobs)",
)
Claimed = tuple[str, JobRequest, float, float]  # job id, request, created_at, started_at
ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)
KEEP_RECORDS_S = 2 * 86400  # metadata of delivered jobs, for stats
# Records and keys past their age are deleted at most this often, at an acknowledge (every
# job's last step), so a queue that runs for months holds KEEP_RECORDS_S of traffic, not all
# of it (before, ORSAY_RETENTION=0, the default, deleted them only at start). One purge over
# 10,000 delivered jobs and their keys took about 4 ms, on the queue's own thread.
PURGE_EVERY_S = 60.0
JOB_COLUMNS = (
    "id, state, created_at, started_at, finished_at, attempts, error, request, summary, result"
)


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE so a read-then-write (limits check, claim) cannot interleave with another."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _job_from_row(row: tuple[Any, ...]) -> JobRecord:
    (job_id, state, created, started, finished, attempts, error, request, summary, result) = row
    return JobRecord(
        id=job_id,
        request=decode_request(request if request is not None else summary),
        state=JobState(state),
        created_at=created,
        started_at=started,
        finished_at=finished,
        attempts=attempts,
        error=error,
        result=result,
    )


class SqliteJobStore:
    """The embedded queue's jobs table through one connection. Every method is one short
    transaction or query."""

    def __init__(self, path: Path, limits: QueueLimits, retention_s: float = 0.0) -> None:
        self.conn = connect(path)
        self.limits = limits
        self.retention_s = retention_s
        self._last_purge = 0.0

    def close(self) -> None:
        self.conn.close()

    # -- the bot's side ----------------------------------------------------------------------

    def recover(self) -> list[float]:
        """Bring the tables up to date (schema.migrate), and hand back jobs orphaned by a dead
        process: RUNNING means the process died mid-job, so the job goes back in line, or fails as
        `worker_died` once it has used all its attempts. Returns the recent run times, oldest
        first, for the ETA."""
        conn = self.conn
        schema.migrate(conn)
        now = time.time()
        with transaction(conn):
            failed = conn.execute(
                "UPDATE jobs SET state = 'failed', error = ?, finished_at = ?"
                " WHERE state = 'running' AND attempts >= ?",
                (WORKER_DIED, now, self.limits.max_attempts),
            ).rowcount
            requeued = conn.execute(
                "UPDATE jobs SET state = 'queued', started_at = NULL WHERE state = 'running'"
            ).rowcount
        if failed or requeued:
            log.warning("recovered %d interrupted job(s), %d failed for good", requeued, failed)
            metrics.JOBS.labels(state="failed").inc(failed)
        self._purge(now)
        self.update_gauges()
        rows = conn.execute(
            "SELECT finished_at - started_at FROM jobs WHERE state = 'done'"
            " AND started_at IS NOT NULL ORDER BY finished_at DESC LIMIT 20"
        ).fetchall()
        return [r[0] for r in reversed(rows)]

    def submit(self, request: JobRequest, key: str | None = None) -> tuple[str, int, bool]:
        """Queue `request`: (job id, place in line, True). With a `key` already used, the job
        that made it instead: (its id, its place in line or 0 once it no longer waits, False),
        looked up before the limits, so a replayed request is never refused."""
        conn = self.conn
        job_id = uuid.uuid4().hex
        stored, shared = blobs.split(request)
        with transaction(conn):
            known = self._keyed(key)
            if known is not None:
                order = self.order()
                return known, order.index(known) + 1 if known in order else 0, False
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
                    encode_request(stored),
                    encode_request(strip_request(stored)),
                ),
            )
            for sha, data in shared.items():
                conn.execute("INSERT OR IGNORE INTO blobs VALUES (?, ?)", (sha, data))
                conn.execute("INSERT INTO job_blobs (job_id, sha256) VALUES (?, ?)", (job_id, sha))
            if key is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO job_keys (key, job_id, created_at) VALUES (?, ?, ?)",
                    (key, job_id, time.time()),
                )
            order = self.order()
        metrics.QUEUE_LENGTH.set(queued + 1)
        return job_id, order.index(job_id) + 1, True

    def _keyed(self, key: str | None) -> str | None:
        """The job submitted with `key`, if it is still on record."""
        if key is None:
            return None
        row = self.conn.execute(
            "SELECT k.job_id FROM job_keys k JOIN jobs j ON j.id = k.job_id WHERE k.key = ?",
            (key,),
        ).fetchone()
        return None if row is None else str(row[0])

    def order(self) -> list[str]:
        """The waiting line, fair order (engine.queue.policy)."""
        rows = self.conn.execute("SELECT id, user_id FROM jobs WHERE state = 'queued' ORDER BY seq")
        return fair_order(rows.fetchall())

    def cancel_queued(self, job_id: str) -> JobState | None:
        """Cancel `job_id` if it waits; else its state (None: no such job)."""
        conn = self.conn
        with transaction(conn):
            if conn.execute(
                "UPDATE jobs SET state = 'cancelled', finished_at = ?"
                " WHERE id = ? AND state = 'queued'",
                (time.time(), job_id),
            ).rowcount:
                return JobState.CANCELLED
            row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else JobState(row[0])

    def get(self, job_id: str) -> JobRecord | None:
        row = self.conn.execute(
            f"SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        return None if row is None else _job_from_row(row)

    def jobs(self, where: str, params: tuple[Any, ...]) -> list[JobRecord]:
        rows = self.conn.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where}", params)
        return [_job_from_row(row) for row in rows.fetchall()]

    def active_jobs(self, user_id: int) -> list[JobRecord]:
        return self.jobs("user_id = ? AND state IN (?, ?) ORDER BY seq", (user_id, *ACTIVE))

    def undelivered(self) -> list[JobRecord]:
        return self.jobs("delivered = 0 ORDER BY seq", ())

    def acknowledge(self, job_id: str) -> None:
        """The job's result reached its user: without retention its pictures go now; what
        is past its age goes too, at most every PURGE_EVERY_S."""
        states = tuple(s.value for s in TERMINAL_STATES)
        self.conn.execute(
            "UPDATE jobs SET delivered = 1 WHERE id = ? AND state IN (?, ?, ?)", (job_id, *states)
        )
        now = time.time()
        if now - self._last_purge > PURGE_EVERY_S:
            self._purge(now)  # this job's pictures too, without retention
        elif self.retention_s <= 0:
            self.conn.execute(
                "UPDATE jobs SET request = NULL, result = NULL WHERE id = ? AND delivered = 1",
                (job_id,),
            )
            self._drop_blobs()

    def _purge(self, now: float) -> None:
        """Delete pictures of delivered jobs past retention, and old records altogether."""
        self._last_purge = now
        self.conn.execute(
            "UPDATE jobs SET request = NULL, result = NULL"
            " WHERE delivered = 1 AND request IS NOT NULL AND finished_at < ?",
            (now - self.retention_s,),
        )
        self.conn.execute(
            "DELETE FROM jobs WHERE delivered = 1 AND finished_at < ?",
            (now - max(self.retention_s, KEEP_RECORDS_S),),
        )
        self.conn.execute("DELETE FROM job_keys WHERE created_at < ?", (now - KEEP_KEYS_S,))
        self._drop_blobs()

    def _drop_blobs(self) -> None:
        """Delete the blobs no job with pictures still needs (their last job's data is gone)."""
        with transaction(self.conn):
            for statement in DROP_BLOBS:
                self.conn.execute(statement)

    def forget(self, user_id: int) -> list[tuple[str, JobState]]:
        """Delete every record of `user_id`; returns their active jobs and states."""
        conn = self.conn
        with transaction(conn):
            rows = conn.execute(
                "SELECT id, state FROM jobs WHERE user_id = ? AND state IN (?, ?)",
                (user_id, *ACTIVE),
            ).fetchall()
            conn.execute(
                "DELETE FROM job_keys WHERE job_id IN (SELECT id FROM jobs WHERE user_id = ?)",
                (user_id,),
            )
            conn.execute("DELETE FROM jobs WHERE user_id = ?", (user_id,))
        self._drop_blobs()
        self.update_gauges()
        return [(job_id, JobState(state)) for job_id, state in rows]

    def stats(self) -> dict[str, Any]:
        conn = self.conn
        midnight = datetime.now().replace(hour=0, minute=0, second=0, microsecond=0).timestamp()
        counts = self._active_counts()
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

    def _active_counts(self) -> dict[str, int]:
        rows = self.conn.execute(
            "SELECT state, COUNT(*) FROM jobs WHERE state IN (?, ?) GROUP BY state", ACTIVE
        )
        return dict(rows.fetchall())

    def update_gauges(self) -> None:
        counts = self._active_counts()
        metrics.QUEUE_LENGTH.set(counts.get("queued", 0))
        metrics.RUNNING_JOBS.set(counts.get("running", 0))

    # -- the painter's side ------------------------------------------------------------------

    def claim(self, picker: Picker | None = None) -> list[Claimed]:
        """Take the head of the line, and with a `picker` that batches, the waiting jobs it
        picks to paint with it (engine.queue.batches) from the line as it stands once the head
        has left it, in fair order; [] if none waits."""
        conn = self.conn
        now = time.time()
        with transaction(conn):
            order = self.order()
            if not order:
                return []
            ((head_id, head_tries, request, created),) = self._waiting(order[:1])
            claimed = [self._take(head_id, request, created, now)]
            if picker is not None and picker.lookahead and head_tries == 0:
                head = picker.key(head_id, decode_request(request))
                rows = self._waiting(self.order()[: picker.lookahead])
                for job_id, _, stored, _ in rows:
                    if not picker.known(job_id):
                        picker.key(job_id, decode_request(stored))
                by_id = {row[0]: row for row in rows}
                chosen = picker.companions(head, [(r[0], r[1] == 0) for r in rows])
                claimed += [self._take(i, *by_id[i][2:], now) for i in chosen]
        self.update_gauges()
        return claimed

    def _waiting(self, ids: list[str]) -> list[tuple[str, int, bytes, float]]:
        """(id, attempts, stored request, created_at) for `ids`, in their order."""
        if not ids:
            return []
        marks = ",".join("?" * len(ids))
        found = {
            row[0]: row
            for row in self.conn.execute(
                f"SELECT id, attempts, request, created_at FROM jobs WHERE id IN ({marks})", ids
            ).fetchall()
        }
        return [found[job_id] for job_id in ids]

    def _take(self, job_id: str, request: bytes, created: float, now: float) -> Claimed:
        """Mark a waiting job running (one more try), with its paintings' bytes back in."""
        conn = self.conn
        conn.execute(
            "UPDATE jobs SET state = 'running', started_at = ?, attempts = attempts + 1"
            " WHERE id = ?",
            (now, job_id),
        )
        shas = blobs.needed(stored := decode_request(request))
        found = dict(
            conn.execute(
                f"SELECT sha256, data FROM blobs WHERE sha256 IN ({','.join('?' * len(shas))})",
                shas,
            ).fetchall()
        )
        return job_id, blobs.join(stored, found), created, now

    def hand_back(self, job_id: str) -> None:
        """Back in line after a shutdown interrupted it; the try is not counted."""
        self.conn.execute(
            "UPDATE jobs SET state = 'queued', started_at = NULL, attempts = attempts - 1"
            " WHERE id = ? AND state = 'running'",
            (job_id,),
        )
        self.update_gauges()

    def finish(self, job_id: str, outcome: JobOutcome, finished: float) -> bool:
        """Record how the job ended; False if it was no longer running (forgotten meanwhile)."""
        changed = self.conn.execute(
            "UPDATE jobs SET state = ?, finished_at = ?, result = ?, error = ?"
            " WHERE id = ? AND state = 'running'",
            (outcome.state.value, finished, outcome.result, outcome.reason, job_id),
        ).rowcount
        self.update_gauges()
        return bool(changed)
