"""Redis backend, bot side: submit jobs to arq and follow their events; `orsay worker` paints.

When Redis is down every call raises `QueueUnavailable` within about a second (short connect
timeout, no retry loop), so the bot can answer "temporarily unavailable" at once; `events()` is
the exception: it waits and reconnects by itself, and resumes the job's stream where it stopped,
so nothing is missed. Whatever was accepted lives in Redis (run it with appendonly) and in arq.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

from arq.connections import ArqRedis
from arq.jobs import Job as ArqJob
from arq.jobs import serialize_job
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool

from engine.observability import metrics
from engine.queue import redis_store as rs
from engine.queue.codec import (
    decode_event,
    decode_request,
    encode_event,
    encode_request,
    strip_request,
)
from engine.queue.limits import QueueLimits
from engine.queue.policy import DEFAULT_RUN_S, RunTimes, eta_s
from engine.queue.seam import (
    TERMINAL_STATES,
    Job,
    JobEvent,
    JobRequest,
    JobState,
    QueueFull,
    QueueStats,
    QueueUnavailable,
    TooManyActiveJobs,
)

log = logging.getLogger(__name__)
DOWN_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError)
JOB_EXPIRES = timedelta(days=30)  # arq drops a job key older than this; our queue is bounded
BLOCK_MS = 2000
WORKER_ALIVE_S = 30.0
POSITION_EVERY_S = 1.0  # a chat cannot show position changes faster anyway
FOLLOWERS_MAX = 4096  # jobs followed at once (Redis allows 10,000 clients by default)


def connect(url: str, *, max_connections: int = 256, wait_s: float | None = 5.0) -> ArqRedis:
    """An arq-capable client that fails fast when Redis is unreachable (no hanging submits).

    A blocking pool: under a burst, callers wait up to `wait_s` for a free connection instead of
    failing with "too many connections" (which would read as Redis being down)."""
    pool = BlockingConnectionPool.from_url(
        url,
        socket_connect_timeout=1.0,
        socket_timeout=BLOCK_MS / 1000 + 3,
        max_connections=max_connections,
        timeout=wait_s,
    )
    return ArqRedis(pool)


@contextlib.contextmanager
def unavailable_on_error() -> Iterator[None]:
    try:
        yield
    except DOWN_ERRORS as exc:
        raise QueueUnavailable("the job queue (Redis) is unreachable") from exc


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _float(value: bytes | str | None) -> float | None:
    text = _text(value)
    return float(text) if text not in (None, "") else None


def job_from_hash(h: dict[bytes, bytes]) -> Job:
    request = h.get(b"request") or h[b"summary"]
    return Job(
        id=_text(h[b"id"]) or "",
        request=decode_request(request),
        state=JobState(h[b"state"].decode()),
        created_at=_float(h.get(b"created_at")) or 0.0,
        started_at=_float(h.get(b"started_at")),
        finished_at=_float(h.get(b"finished_at")),
        attempts=int(_float(h.get(b"attempts")) or 0),
        error=_text(h.get(b"error")),
        result=h.get(b"result"),
    )


async def recent_run_times(redis: Any) -> RunTimes:
    runs = await redis.lrange(rs.RUNS, 0, 19)
    return RunTimes(float(r) for r in reversed(runs))


class RedisQueue:
    """`JobQueue` on Redis + arq. Painting happens in `orsay worker` processes."""

    def __init__(
        self, url: str, *, limits: QueueLimits | None = None, retention_s: float = 0.0
    ) -> None:
        self.url = url
        self.limits = limits or QueueLimits()
        self.retention_s = retention_s
        # Any: redis-py's async stubs type every reply as `T | Awaitable[T]`
        self._redis: Any = None
        self._scripts: dict[str, Any] = {}
        self._follow: Any = None  # followers block in XREAD, one connection each: own pool

    @property
    def redis(self) -> Any:
        if self._redis is None:
            raise QueueUnavailable("the queue is not started")
        return self._redis

    async def start(self) -> None:
        """Connects lazily: a bot may start while Redis is still down and recover later."""
        self._redis = connect(self.url)
        self._follow = connect(self.url, max_connections=FOLLOWERS_MAX, wait_s=None)
        for name in ("SUBMIT", "CANCEL"):
            self._scripts[name] = self._redis.register_script(getattr(rs, name))
        try:
            await self._redis.ping()
        except DOWN_ERRORS:
            log.warning("Redis at %s is unreachable; will keep trying", self.url.split("@")[-1])

    async def close(self) -> None:
        for client in (self._redis, self._follow):
            if client is not None:
                await client.aclose(close_connection_pool=True)
        self._redis = self._follow = None

    # -- the seam --------------------------------------------------------------------------

    async def submit(self, request: JobRequest) -> tuple[str, int]:
        job_id = uuid.uuid4().hex
        now = time.time()
        now_ms = int(now * 1000)
        keys = [
            rs.job_key(job_id),
            rs.QUEUED,
            rs.active_key(request.user_id),
            rs.user_key(request.user_id),
            rs.UNDELIVERED,
            rs.LINE,
            rs.arq_job_key(job_id),
            rs.ARQ_QUEUE,
        ]
        args = [
            job_id,
            self.limits.per_user,
            self.limits.max_queue,
            now_ms,
            repr(now),
            request.user_id,
            request.chat_id,
            encode_request(request),
            encode_request(strip_request(request)),
            serialize_job(rs.TASK, (job_id,), {}, None, now_ms),
            int(JOB_EXPIRES.total_seconds() * 1000),
        ]
        with unavailable_on_error():
            position, _ = await self._scripts["SUBMIT"](keys=keys, args=args)
        if position == -1:
            raise TooManyActiveJobs(self.limits.per_user)
        if position == -2:
            raise QueueFull(self.limits.max_queue)
        metrics.JOBS.labels(state="queued").inc()
        return job_id, int(position)

    async def position(self, job_id: str) -> int | None:
        with unavailable_on_error():
            rank = await self.redis.zrank(rs.QUEUED, job_id)
        return None if rank is None else int(rank) + 1

    async def cancel(self, job_id: str) -> bool:
        with unavailable_on_error():
            user_id = await self.redis.hget(rs.job_key(job_id), "user_id")
            if user_id is None:
                return False
            event = encode_event(JobEvent(job_id, "cancelled"))
            keys = [
                rs.job_key(job_id),
                rs.QUEUED,
                rs.ARQ_QUEUE,
                rs.active_key(_text(user_id) or ""),
                rs.LINE,
                rs.events_key(job_id),
            ]
            outcome = await self._scripts["CANCEL"](keys=keys, args=[job_id, time.time(), event])
            if outcome:  # arq drops a waiting job, or cancels the running task -> painter stops
                with contextlib.suppress(asyncio.TimeoutError):
                    await ArqJob(job_id, self.redis).abort(timeout=0, poll_delay=0.01)
        if outcome == 1:
            metrics.JOBS.labels(state="cancelled").inc()
        return bool(outcome)

    async def events(self, job_id: str) -> AsyncIterator[JobEvent]:
        """Replay, then follow the job's stream. While the job waits, the shared `orsay:line`
        stream says when the line moved; the position is re-read at most every
        POSITION_EVERY_S, so hundreds of followers do not all query Redis on every submit."""
        backoff = 0.2
        stream = rs.events_key(job_id)
        last_id: bytes | str | None = None
        line_id: bytes | str = "$"
        state: str | None = None
        position: int | None = None
        line_moved, checked_at = False, 0.0
        while True:
            try:
                if last_id is None:  # replay the current state, then follow from there
                    snapshot = await self._snapshot(job_id)
                    if snapshot is None:
                        return
                    replay, state, position, last_id, line_id = snapshot
                    checked_at = time.monotonic()
                    for event in replay:
                        yield event
                    if replay and replay[-1].terminal:
                        return
                if self._follow is None:
                    raise QueueUnavailable("the queue is closed")
                streams: dict[str, bytes | str] = {stream: last_id}
                block = BLOCK_MS
                if state == JobState.QUEUED:
                    if line_moved:  # already know; wake when the next check is due
                        due = checked_at + POSITION_EVERY_S - time.monotonic()
                        block = max(1, min(BLOCK_MS, int(due * 1000)))
                    else:
                        streams[rs.LINE] = line_id
                reply = await self._follow.xread(streams, block=block, count=100)
                backoff = 0.2
                if not reply and not await self.redis.exists(rs.job_key(job_id)):
                    yield JobEvent(job_id, "cancelled")  # forgotten while we listened
                    return
                for name, entries in reply or []:
                    if _text(name) == rs.LINE:
                        line_id, line_moved = entries[-1][0], True
                        continue
                    for entry_id, fields in entries:
                        last_id = entry_id
                        event = decode_event(fields[b"e"])
                        if state == JobState.RUNNING and event.kind in ("queued", "started"):
                            continue
                        if event.kind == "started":
                            state = JobState.RUNNING
                        if event.kind == "done" and event.result is None:
                            result = await self.redis.hget(rs.job_key(job_id), "result")
                            event = JobEvent(
                                job_id, "done", result=result, elapsed_s=event.elapsed_s
                            )
                        yield event
                        if event.terminal:
                            return
                due = time.monotonic() - checked_at >= POSITION_EVERY_S
                if state == JobState.QUEUED and line_moved and due:
                    line_moved, checked_at = False, time.monotonic()
                    moved = await self._position_event(job_id, position)
                    if moved is not None:
                        position = moved.position
                        yield moved
            except DOWN_ERRORS:
                log.info("lost Redis while following job %s; reconnecting", job_id)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _snapshot(
        self, job_id: str
    ) -> tuple[list[JobEvent], str, int | None, bytes | str, bytes | str] | None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(rs.job_key(job_id), ["state", "started_at", "finished_at", "error"])
            pipe.xrevrange(rs.events_key(job_id), count=1)
            pipe.zrank(rs.QUEUED, job_id)
            pipe.xrevrange(rs.LINE, count=1)
            (state_b, started, finished, error), last, rank, line = await pipe.execute()
        if state_b is None:
            return None
        state = _text(state_b) or ""
        last_id: bytes | str = last[0][0] if last else "0-0"
        line_id: bytes | str = line[0][0] if line else "0-0"
        position = None if rank is None else int(rank) + 1
        if state == JobState.QUEUED:
            position = position or 1
            eta = eta_s(position, (await recent_run_times(self.redis)).estimate())
            return (
                [JobEvent(job_id, "queued", position=position, eta_s=eta)],
                state,
                position,
                last_id,
                line_id,
            )
        if state == JobState.RUNNING:
            elapsed = time.time() - (_float(started) or time.time())
            replay = [JobEvent(job_id, "started", elapsed_s=round(elapsed, 3))]
            if last and (previous := decode_event(last[0][1][b"e"])).kind == "progress":
                replay.append(previous)
            return replay, state, None, last_id, line_id
        if state == JobState.DONE:
            result = await self.redis.hget(rs.job_key(job_id), "result")
            elapsed = (_float(finished) or 0) - (_float(started) or _float(finished) or 0)
            event = JobEvent(job_id, "done", result=result, elapsed_s=round(elapsed, 3))
        elif state == JobState.FAILED:
            event = JobEvent(job_id, "failed", reason=_text(error) or "painter_error")
        else:
            event = JobEvent(job_id, "cancelled")
        return [event], state, None, last_id, line_id

    async def _position_event(self, job_id: str, known: int | None) -> JobEvent | None:
        rank = await self.redis.zrank(rs.QUEUED, job_id)
        if rank is None or int(rank) + 1 == known:
            return None
        position = int(rank) + 1
        eta = eta_s(position, (await recent_run_times(self.redis)).estimate())
        return JobEvent(job_id, "position", position=position, eta_s=eta)

    async def get(self, job_id: str) -> Job | None:
        with unavailable_on_error():
            h = await self.redis.hgetall(rs.job_key(job_id))
        return job_from_hash(h) if h else None

    async def _jobs(self, ids: list[bytes] | set[bytes]) -> list[Job]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(rs.job_key(_text(job_id) or ""))
            hashes = await pipe.execute()
        jobs = [job_from_hash(h) for h in hashes if h]
        return sorted(jobs, key=lambda job: job.created_at)

    async def active_jobs(self, user_id: int) -> list[Job]:
        with unavailable_on_error():
            return await self._jobs(await self.redis.smembers(rs.active_key(user_id)))

    async def undelivered(self) -> list[Job]:
        with unavailable_on_error():
            return await self._jobs(await self.redis.smembers(rs.UNDELIVERED))

    async def acknowledge(self, job_id: str) -> None:
        key = rs.job_key(job_id)
        with unavailable_on_error():
            state = _text(await self.redis.hget(key, "state"))
            if state is None or JobState(state) not in TERMINAL_STATES:
                return
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, "delivered", 1)
                pipe.srem(rs.UNDELIVERED, job_id)
                pipe.delete(rs.events_key(job_id))
                if self.retention_s > 0:
                    pipe.expire(key, int(self.retention_s))
                else:
                    pipe.hdel(key, "request", "result")
                    pipe.expire(key, rs.KEEP_RECORDS_S)
                await pipe.execute()

    async def forget(self, user_id: int) -> None:
        with unavailable_on_error():
            ids = [_text(i) or "" for i in await self.redis.smembers(rs.user_key(user_id))]
            for job_id in ids:
                await self.cancel(job_id)
            async with self.redis.pipeline(transaction=True) as pipe:
                for job_id in ids:  # followers still hear `cancelled`; the stream expires soon
                    gone = encode_event(JobEvent(job_id, "cancelled"))
                    pipe.delete(rs.job_key(job_id))
                    pipe.xadd(rs.events_key(job_id), {"e": gone})
                    pipe.expire(rs.events_key(job_id), 60)
                    pipe.zrem(rs.QUEUED, job_id)
                    pipe.srem(rs.UNDELIVERED, job_id)
                    pipe.srem(rs.RUNNING, job_id)
                pipe.delete(rs.user_key(user_id), rs.active_key(user_id))
                await pipe.execute()

    async def stats(self) -> QueueStats:
        now = time.time()
        with unavailable_on_error():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(rs.QUEUED)
                pipe.scard(rs.RUNNING)
                pipe.hgetall(rs.day_key(now))
                pipe.lrange(rs.WAITS, 0, 49)
                pipe.lrange(rs.RUNS, 0, 19)
                pipe.zcount(rs.WORKERS, now - WORKER_ALIVE_S, "+inf")
                queued, running, day, waits, runs, workers = await pipe.execute()
        return QueueStats(
            queued=int(queued),
            running=int(running),
            done_today=int(day.get(b"done", 0)),
            failed_today=int(day.get(b"failed", 0)),
            mean_wait_s=sum(map(float, waits)) / len(waits) if waits else None,
            mean_run_s=sum(map(float, runs)) / len(runs) if runs else None,
            workers_alive=int(workers),
        )

    async def healthy(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (*DOWN_ERRORS, QueueUnavailable):
            return False


__all__ = ["DEFAULT_RUN_S", "RedisQueue", "connect", "job_from_hash"]
