"""Talking to Redis for both sides of the Redis backend: the client, its failure modes, and the
job record (a hash, keys.py) read back as a `JobRecord`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis

from engine.queue.codec import decode_request
from engine.queue.policy import RunTimes
from engine.queue.redis_backend import keys as k
from engine.queue.seam import JobRecord, JobState, QueueUnavailable

DOWN_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)
BLOCK_MS = 2000  # longest a follower blocks in XREAD; the socket timeout allows for it
# Every field of a job record except the full request (pictures) and the result: a replay reads
# these; the result is fetched only for a finished job.
STATUS_FIELDS = (
    "id",
    "state",
    "created_at",
    "started_at",
    "finished_at",
    "attempts",
    "error",
    "summary",
)


def connect(url: str, *, max_connections: int = 256, wait_s: float | None = 5.0) -> Any:
    """A client that fails fast when Redis is unreachable (no hanging submits).

    A blocking pool: under a burst, callers wait up to `wait_s` for a free connection instead of
    failing with "too many connections" (which would read as Redis being down). Typed Any:
    redis-py's async stubs type every reply as `T | Awaitable[T]`."""
    pool = BlockingConnectionPool.from_url(
        url,
        socket_connect_timeout=1.0,
        socket_timeout=BLOCK_MS / 1000 + 3,
        max_connections=max_connections,
        timeout=wait_s,
    )
    return Redis(connection_pool=pool)


@contextlib.contextmanager
def unavailable_on_error() -> Iterator[None]:
    try:
        yield
    except DOWN_ERRORS as exc:
        raise QueueUnavailable("the job queue (Redis) is unreachable") from exc


def text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def number(value: bytes | str | None) -> float | None:
    value = text(value)
    return float(value) if value not in (None, "") else None


def job_from_hash(h: dict[bytes, bytes]) -> JobRecord:
    request = h.get(b"request") or h[b"summary"]
    return JobRecord(
        id=text(h[b"id"]) or "",
        request=decode_request(request),
        state=JobState(h[b"state"].decode()),
        created_at=number(h.get(b"created_at")) or 0.0,
        started_at=number(h.get(b"started_at")),
        finished_at=number(h.get(b"finished_at")),
        attempts=int(number(h.get(b"attempts")) or 0),
        error=text(h.get(b"error")),
        result=h.get(b"result"),
    )


def status_from_fields(values: list[bytes | None]) -> dict[bytes, bytes]:
    """HMGET STATUS_FIELDS' reply as the hash job_from_hash reads (without the pictures)."""
    return {f.encode(): v for f, v in zip(STATUS_FIELDS, values, strict=True) if v is not None}


async def recent_run_times(redis: Any) -> RunTimes:
    runs = await redis.lrange(k.RUNS, 0, k.RECENT - 1)
    return RunTimes(float(r) for r in reversed(runs))
