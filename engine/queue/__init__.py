"""The job queue between bot and painter. Callers use `open_queue()` and the `JobQueue` seam.

    queue = open_queue(settings.queue_url, painter=painter, data_dir=settings.data_dir)
    await queue.start()
    job_id, position = await queue.submit(request)
    async for event in queue.events(job_id): ...

`url` None / "" / "sqlite:///path" is the embedded backend (SQLite + a painter thread in this
process); "redis://host:port/db" is the Redis backend, where `orsay worker` processes paint.
"""

from __future__ import annotations

from pathlib import Path

from engine.queue.seam import (
    TERMINAL_STATES,
    BatchItem,
    BatchPainter,
    JobEvent,
    JobOptions,
    JobQueue,
    JobRecord,
    JobRequest,
    JobState,
    Painter,
    ProgressCallback,
    QueueError,
    QueueFull,
    QueueStats,
    QueueUnavailable,
    StyleChoice,
    TooManyActiveJobs,
)
from engine.settings import QueueLimits, is_redis_url

__all__ = [
    "TERMINAL_STATES",
    "BatchItem",
    "BatchPainter",
    "JobEvent",
    "JobOptions",
    "JobQueue",
    "JobRecord",
    "JobRequest",
    "JobState",
    "Painter",
    "ProgressCallback",
    "QueueError",
    "QueueFull",
    "QueueLimits",
    "QueueStats",
    "QueueUnavailable",
    "StyleChoice",
    "TooManyActiveJobs",
    "open_queue",
]

DB_NAME = "queue.sqlite3"


def open_queue(
    url: str | None = None,
    *,
    painter: Painter | None = None,
    data_dir: Path | None = None,
    limits: QueueLimits | None = None,
    retention_s: float = 0.0,
    shutdown_grace_s: float = 30.0,
) -> JobQueue:
    """The queue `url` names, not started yet (call `await queue.start()`).

    Embedded: the SQLite file is `sqlite:///path` or `<data_dir>/queue.sqlite3`; with a `painter`
    the queue paints in a thread of this process. Redis: this process only submits and listens;
    `painter` is ignored (workers bring their own). `retention_s` (ORSAY_RETENTION) keeps a
    delivered job's pictures that long; `shutdown_grace_s` (ORSAY_SHUTDOWN_GRACE) is how long the
    embedded painter may finish a running job on close.
    """
    limits = limits or QueueLimits()
    url = (url or "").strip()
    if is_redis_url(url):
        from engine.queue.redis_backend import RedisQueue

        return RedisQueue(url, limits=limits, retention_s=retention_s)
    if url and not url.startswith("sqlite://"):
        raise ValueError(f"unknown queue url {url!r}: use sqlite:///path or redis://host:port/db")
    from engine.queue.embedded import SqliteQueue

    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        path = Path(url[len("sqlite:///") :])  # sqlite:///rel/path or sqlite:////abs/path
    else:
        if data_dir is None:
            raise ValueError("the embedded queue needs data_dir or a sqlite:///path url")
        path = Path(data_dir) / DB_NAME
    return SqliteQueue(
        path,
        painter=painter,
        limits=limits,
        retention_s=retention_s,
        shutdown_grace_s=shutdown_grace_s,
    )
