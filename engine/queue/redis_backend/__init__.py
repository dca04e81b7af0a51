"""Redis backend: the bot submits and follows jobs; `orsay worker` processes paint them.

    keys.py     every key name and what it holds (one source of truth for the line: orsay:queued)
    scripts.py  the Lua scripts for each atomic change (lua/*.lua), as Redis runs them
    store.py    the client, its failure modes, job records
    events.py   following a job: replay, then its stream, reconnecting by itself
    worker.py   the worker loop: claim with a lease, paint, finish; reaping dead workers' jobs
    here        `RedisQueue`, the bot's `JobQueue` façade

When Redis is down every call raises `QueueUnavailable` instead of retrying, so the bot can
answer "temporarily unavailable": at once when the connection is refused, within the 1 s connect
timeout when Redis does not answer it, and within 5 s when Redis stops answering on an open
connection (the socket timeout, BLOCK_MS + 3 s so a follower's blocking read fits in it) or
every connection is busy (the pool's wait; store.connect). `events()` is the exception: it waits
and reconnects by itself, and resumes the job's stream where it stopped, so nothing is missed.
Whatever was accepted lives in Redis (run it with appendonly).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from redis.exceptions import WatchError

from engine.observability import metrics
from engine.queue import blobs
from engine.queue.codec import encode_event, encode_request, strip_request
from engine.queue.redis_backend import keys as k
from engine.queue.redis_backend import scripts
from engine.queue.redis_backend.events import follow
from engine.queue.redis_backend.store import (
    DOWN_ERRORS,
    connect,
    job_from_hash,
    text,
    unavailable_on_error,
)
from engine.queue.seam import (
    TERMINAL_STATES,
    JobEvent,
    JobRecord,
    JobRequest,
    JobState,
    QueueFull,
    QueueStats,
    QueueUnavailable,
    TooManyActiveJobs,
)
from engine.settings import QueueLimits

log = logging.getLogger(__name__)
WORKER_ALIVE_S = 30.0
FOLLOWERS_MAX = 4096  # jobs followed at once (Redis allows 10,000 clients by default)


class RedisQueue:
    """`JobQueue` on Redis. Painting happens in `orsay worker` processes."""

    def __init__(
        self, url: str, *, limits: QueueLimits | None = None, retention_s: float = 0.0
    ) -> None:
        self.url = url
        self.limits = limits or QueueLimits()
        self.retention_s = retention_s
        self._redis: Any = None
        self._scripts: dict[str, Any] = {}
        self.follow_client: Any = None  # followers block in XREAD, one connection each: own pool

    @property
    def redis(self) -> Any:
        if self._redis is None:
            raise QueueUnavailable("the queue is not started")
        return self._redis

    async def start(self) -> None:
        """Connects lazily: a bot may start while Redis is still down and recover later."""
        self._redis = connect(self.url)
        self.follow_client = connect(self.url, max_connections=FOLLOWERS_MAX, wait_s=None)
        for name in ("SUBMIT", "CANCEL", "RELEASE"):
            self._scripts[name] = self._redis.register_script(getattr(scripts, name))
        try:
            await self._redis.ping()
        except DOWN_ERRORS:
            log.warning("Redis at %s is unreachable; will keep trying", self.url.split("@")[-1])

    async def close(self) -> None:
        for client in (self._redis, self.follow_client):
            if client is not None:
                await client.aclose(close_connection_pool=True)
        self._redis = self.follow_client = None

    # -- the seam --------------------------------------------------------------------------

    async def submit(self, request: JobRequest, *, key: str | None = None) -> tuple[str, int]:
        job_id = uuid.uuid4().hex
        stored, shared = blobs.split(request)
        shas = list(shared)
        keys = [
            k.job_key(job_id),
            k.QUEUED,
            k.active_key(request.user_id),
            k.user_key(request.user_id),
            k.UNDELIVERED,
            k.LINE,
            *k.blob_keys(shas),
            k.submitted_key(key),
        ]
        args: list[Any] = [
            job_id,
            self.limits.per_user,
            self.limits.max_queue,
            repr(time.time()),
            request.user_id,
            request.chat_id,
            encode_request(stored),
            encode_request(strip_request(stored)),
            ",".join(shas),
            *shared.values(),
        ]
        with unavailable_on_error():
            reply = await self._scripts["SUBMIT"](keys=keys, args=args)
            position = reply[0]
            if position == -3:  # submitted before with this key: that job, not a new one
                known = text(reply[1]) or ""
                return known, await self.position(known) or 0
        if position == -1:
            raise TooManyActiveJobs(self.limits.per_user)
        if position == -2:
            raise QueueFull(self.limits.max_queue)
        metrics.JOBS.labels(state="queued").inc()
        return job_id, int(position)

    async def position(self, job_id: str) -> int | None:
        with unavailable_on_error():
            rank = await self.redis.zrank(k.QUEUED, job_id)
        return None if rank is None else int(rank) + 1

    async def cancel(self, job_id: str) -> bool:
        """A waiting job is cancelled here; a running one is flagged, and its worker stops the
        painter within its poll interval and reports `cancelled`."""
        with unavailable_on_error():
            user_id = await self.redis.hget(k.job_key(job_id), "user_id")
            if user_id is None:
                return False
            keys = [
                k.job_key(job_id),
                k.QUEUED,
                k.active_key(text(user_id) or ""),
                k.LINE,
                k.events_key(job_id),
            ]
            outcome = await self._scripts["CANCEL"](keys=keys, args=[job_id, time.time()])
        if outcome == 1:
            metrics.JOBS.labels(state="cancelled").inc()
        return bool(outcome)

    def events(self, job_id: str) -> AsyncIterator[JobEvent]:
        return follow(self, job_id)

    async def get(self, job_id: str) -> JobRecord | None:
        with unavailable_on_error():
            h = await self.redis.hgetall(k.job_key(job_id))
        return job_from_hash(h) if h else None

    async def _jobs(self, ids: list[bytes] | set[bytes]) -> list[JobRecord]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(k.job_key(text(job_id) or ""))
            hashes = await pipe.execute()
        jobs = [job_from_hash(h) for h in hashes if h]
        return sorted(jobs, key=lambda job: job.created_at)

    async def active_jobs(self, user_id: int) -> list[JobRecord]:
        with unavailable_on_error():
            return await self._jobs(await self.redis.smembers(k.active_key(user_id)))

    async def undelivered(self) -> list[JobRecord]:
        with unavailable_on_error():
            return await self._jobs(await self.redis.smembers(k.UNDELIVERED))

    async def acknowledge(self, job_id: str) -> None:
        key = k.job_key(job_id)
        with unavailable_on_error():
            state_b, shas_b, user_b = await self.redis.hmget(key, ["state", "blobs", "user_id"])
            state = text(state_b)
            if state is None or JobState(state) not in TERMINAL_STATES:
                return
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, "delivered", 1)
                pipe.srem(k.UNDELIVERED, job_id)
                pipe.delete(k.events_key(job_id))
                if self.retention_s > 0:
                    pipe.expire(key, int(self.retention_s))
                else:
                    pipe.hdel(key, "request", "result")
                    pipe.expire(key, k.KEEP_RECORDS_S)
                # in the same transaction: a crash here cannot leave a painting held forever
                until = time.time() + self.retention_s if self.retention_s > 0 else 0
                await self._release(job_id, shas_b, until, client=pipe)
                await pipe.execute()
            await self._drop_expired(text(user_b) or "")

    async def _drop_expired(self, user_id: str) -> None:
        """Take the jobs whose record has expired out of the user's set of jobs: that set (what
        /forget deletes) is the one key of a job without a TTL, and kept every id it was given."""
        user_key = k.user_key(user_id)
        ids = [text(i) or "" for i in await self.redis.smembers(user_key)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.exists(k.job_key(job_id))
            alive = await pipe.execute()
        gone = [job_id for job_id, found in zip(ids, alive, strict=True) if not found]
        if gone:
            await self.redis.srem(user_key, *gone)

    async def _release(
        self, job_id: str, shas_b: bytes | None, until: float, client: Any = None
    ) -> None:
        """End `job_id`'s hold on its blobs (`shas_b`: the record's `blobs` field) at `until`."""
        shas = [sha for sha in (text(shas_b) or "").split(",") if sha]
        if shas:
            release = self._scripts["RELEASE"]
            await release(keys=k.blob_keys(shas), args=[job_id, until], client=client)

    async def forget(self, user_id: int) -> None:
        """Delete every job of the user and end their holds on paintings, in one transaction
        (WATCH on the user's job set, so a job submitted meanwhile is not left behind): a crash
        cannot leave a painting held forever or a job half-forgotten. A running job's worker
        sees its record gone and stops the painter; followers still hear `cancelled`."""
        user_key = k.user_key(user_id)
        with unavailable_on_error():
            async with self.redis.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(user_key)
                        ids = [text(i) or "" for i in await pipe.smembers(user_key)]
                        records = [
                            await pipe.hmget(k.job_key(job_id), ["state", "blobs", "submitted"])
                            for job_id in ids
                        ]
                        pipe.multi()
                        for job_id, (_, shas_b, submitted) in zip(ids, records, strict=True):
                            await self._release(job_id, shas_b, 0, client=pipe)
                            if submitted:  # its submit key would name a job that is gone
                                pipe.delete(text(submitted) or "")
                            gone = encode_event(JobEvent(job_id, "cancelled"))
                            pipe.delete(k.job_key(job_id))
                            pipe.xadd(k.events_key(job_id), {"e": gone})
                            pipe.expire(k.events_key(job_id), k.FORGOTTEN_STREAM_TTL_S)
                            pipe.zrem(k.QUEUED, job_id)
                            pipe.srem(k.UNDELIVERED, job_id)
                            pipe.srem(k.RUNNING, job_id)
                        pipe.delete(user_key, k.active_key(user_id))
                        await pipe.execute()
                        break
                    except WatchError:  # the user submitted meanwhile: read again
                        continue
        waiting = sum(text(state) == JobState.QUEUED.value for state, _, _ in records)
        if waiting:
            metrics.JOBS.labels(state="cancelled").inc(waiting)

    async def stats(self) -> QueueStats:
        now = time.time()
        with unavailable_on_error():
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(k.QUEUED)
                pipe.scard(k.RUNNING)
                pipe.hgetall(k.day_key(now))
                pipe.lrange(k.WAITS, 0, k.RECENT_WAITS - 1)
                pipe.lrange(k.RUNS, 0, k.RECENT - 1)
                pipe.zcount(k.WORKERS, now - WORKER_ALIVE_S, "+inf")
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


__all__ = ["RedisQueue"]
