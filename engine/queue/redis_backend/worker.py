"""Redis backend, worker side: the loop of `orsay worker`, which takes jobs and paints them.

CLAIM takes the head of the fair line (if it still is the head: the worker reads it first, to
give the script its keys) and gives this worker a lease (`orsay:lease:<id>`, `lease_s` long) that
it renews while it paints. With a BatchPainter, CLAIM_MORE then takes up to `batch - 1`
compatible jobs from the next places in line (engine.queue.batches), each with its own lease, and
one painter call paints them all; with a plain Painter (or ORSAY_BATCH=1) it is one job at a
time. A worker that dies stops renewing; any live worker's reaper then hands each of its jobs
back to the line (that job's try counted), or fails it as `worker_died` once it has used
`max_attempts` tries. Each try is fenced by its attempt number, so a worker that lost its lease
cannot overwrite a later try's outcome.

While jobs paint, a watcher per job checks every `poll_s` whether the user cancelled it (or
/forgot), whether it ran past `job_timeout_s`, or whether a shutdown's grace is over, and if so
sets that job's cancel flag (its batch-mates go on); lifecycle.settle turns the reason into the
outcome. Redis outages are waited out with a back-off that resets after the next good round
trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from engine.observability import metrics
from engine.queue import blobs
from engine.queue.batches import Picker
from engine.queue.codec import decode_request, encode_event
from engine.queue.lifecycle import (
    TIMEOUT,
    WORKER_DIED,
    Interruption,
    JobOutcome,
    log_failure,
    run_batch,
    settle,
    stamp,
    terminal_event,
)
from engine.queue.redis_backend import keys as k
from engine.queue.redis_backend import scripts
from engine.queue.redis_backend.store import DOWN_ERRORS, connect, text
from engine.queue.seam import BatchItem, JobEvent, JobRequest, JobState, Painter, ProgressCallback
from engine.settings import QueueLimits

log = logging.getLogger(__name__)
HEARTBEAT_S = 5.0
CLAIM_TRIES = 5  # looks at the head per round, when other workers keep taking it first
BACKOFF_S = (1.0, 30.0)  # waiting for Redis: first delay, longest


@dataclass
class WorkerConfig:
    url: str
    limits: QueueLimits = field(default_factory=QueueLimits)
    lease_s: float = 10.0  # a dead worker's job is retried this long after it died
    job_timeout_s: float = 3600.0
    grace_s: float = 30.0  # on stop(): time the running jobs get to finish
    poll_s: float = 0.2  # idle: between looks at the line; busy: between cancel checks
    name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


@dataclass
class _Running:
    job_id: str
    attempts: int
    started: float  # unix time, as recorded by CLAIM
    wait_s: float = 0.0  # how long it waited in line
    cancel: threading.Event = field(default_factory=threading.Event)
    why: Interruption = None

    def interrupt(self, why: Interruption) -> None:
        if self.why is None:
            self.why = why
        self.cancel.set()


class RedisWorker:
    def __init__(self, config: WorkerConfig, painter: Painter) -> None:
        self.config, self.painter = config, painter
        self.redis: Any = None
        self._scripts: dict[str, Any] = {}
        self._stop = asyncio.Event()
        self._stop_at: float | None = None  # monotonic time stop() was called
        self._grace_s = config.grace_s
        self._reaped_at = 0.0
        self.picker = Picker(painter)  # how many jobs, and which, it paints at once

    def stop(self, grace_s: float | None = None) -> None:
        """Stop taking jobs; the running ones get the grace period, then go back in line."""
        if grace_s is not None:
            self._grace_s = grace_s
        if self._stop_at is None:
            self._stop_at = time.monotonic()
        self._stop.set()

    async def run(self) -> None:
        """Take and paint jobs until stop(); Redis being away only pauses it."""
        cfg = self.config
        self.redis = connect(cfg.url)
        for name in ("CLAIM", "CLAIM_MORE", "FINISH", "REQUEUE"):
            self._scripts[name] = self.redis.register_script(getattr(scripts, name))
        beat = asyncio.create_task(self._heartbeat())
        log.info("worker %s taking jobs from %s", cfg.name, cfg.url.split("@")[-1])
        backoff = BACKOFF_S[0]
        try:
            while not self._stop.is_set():
                try:
                    await self._reap()
                    claimed = await self._claim()
                    backoff = BACKOFF_S[0]
                    if not claimed:
                        await self._sleep(cfg.poll_s)
                        continue
                    await self._paint(claimed)
                except DOWN_ERRORS as exc:
                    log.warning("Redis unreachable (%s); retrying in %.0f s", exc, backoff)
                    await self._sleep(backoff)
                    backoff = min(backoff * 2, BACKOFF_S[1])
        finally:
            beat.cancel()
            with contextlib.suppress(*DOWN_ERRORS):
                await self.redis.zrem(k.WORKERS, cfg.name)
            await self.redis.aclose(close_connection_pool=True)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    # -- one batch (one job unless the painter batches) ---------------------------------------

    async def _claim(self) -> list[_Running]:
        """The head of the line, then (for a BatchPainter, when the head is on its first try)
        the waiting jobs the picker chooses to paint with it; [] when nobody waits."""
        now = time.time()
        args = [now, int(self.config.lease_s * 1000), self.config.name]
        claimed = await self._claim_head(args)
        if not claimed:
            return []
        head = _Running(text(claimed[0]) or "", int(claimed[1]), now, float(claimed[2]))
        more = await self._companions(head) if head.attempts == 1 else {}
        if not more:
            return [head]
        keys = [*k.LINE_KEYS, *(key for i, user in more.items() for key in k.job_keys(i, user))]
        taken = await self._scripts["CLAIM_MORE"](keys=keys, args=[*args, len(more), *more])
        return [head] + [_Running(text(t[0]) or "", int(t[1]), now, float(t[2])) for t in taken]

    async def _claim_head(self, args: list[Any]) -> Any:
        """CLAIM's reply for the head of the line as read just now; the script takes it only if
        it still is the head, so the head is read again when another worker was quicker."""
        for _ in range(CLAIM_TRIES):
            head = await self.redis.zrange(k.QUEUED, 0, 0)
            if not head:
                return None
            job_id = text(head[0]) or ""
            user = text(await self.redis.hget(k.job_key(job_id), "user_id")) or ""
            keys = [*k.LINE_KEYS, *k.job_keys(job_id, user)]
            claimed = await self._scripts["CLAIM"](keys=keys, args=[job_id, *args])
            if claimed:
                return claimed
        return None

    async def _companions(self, head: _Running) -> dict[str, str]:
        """Waiting jobs in the head's bucket, in fair order (engine.queue.batches), with their
        users; each job's request is read once for its bucket, which the picker then remembers."""
        picker = self.picker
        if not picker.lookahead:
            return {}
        line = [text(i) or "" for i in await self.redis.zrange(k.QUEUED, 0, picker.lookahead - 1)]
        unknown = [i for i in [head.job_id, *line] if not picker.known(i)]
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in unknown:
                pipe.hget(k.job_key(job_id), "request")
            for job_id in line:
                pipe.hmget(k.job_key(job_id), ["attempts", "user_id"])
            replies = await pipe.execute()
        for job_id, request_b in zip(unknown, replies[: len(unknown)], strict=True):
            if request_b is not None:
                picker.key(job_id, decode_request(request_b))
        records = dict(zip(line, replies[len(unknown) :], strict=True))
        first = [(i, tries is not None and int(tries) == 0) for i, (tries, _) in records.items()]
        chosen = picker.companions(picker.key(head.job_id), first)
        return {i: text(records[i][1]) or "" for i in chosen}

    async def _paint(self, jobs: list[_Running]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job in jobs:
                pipe.hmget(k.job_key(job.job_id), ["request", "user_id"])
            records = await pipe.execute()
        ready = []
        for job, (request_b, user_id) in zip(jobs, records, strict=True):
            metrics.JOBS.labels(state="running").inc()
            metrics.WAIT_SECONDS.observe(job.wait_s)
            if request_b is not None:  # else forgotten between the claim and now
                ready.append((job, text(user_id) or "", await self._with_blobs(request_b)))
        if not ready:
            return
        metrics.RUNNING_JOBS.inc(len(ready))
        try:
            outcomes = await self._run_painter([(job, request) for job, _, request in ready])
        finally:
            metrics.RUNNING_JOBS.dec(len(ready))
        for (job, user_id, _), outcome in zip(ready, outcomes, strict=True):
            if outcome is None:
                await self._requeue(job.job_id, user_id, job.attempts, give_back=True)
                log.info("job %s handed back to the queue on shutdown", job.job_id)
                continue
            if job.why == "timeout":
                cause = f"ran past the job timeout ({self.config.job_timeout_s:.0f} s)"
                log_failure(job.job_id, TIMEOUT, cause)
            await self._finish(job.job_id, user_id, outcome, attempts=job.attempts, job=job)

    async def _with_blobs(self, request_b: bytes) -> JobRequest:
        """The stored request with its paintings' bytes back in (engine.queue.blobs)."""
        request = decode_request(request_b)
        shas = blobs.needed(request)
        found = await self.redis.mget([k.blob_key(sha) for sha in shas]) if shas else []
        return blobs.join(request, dict(zip(shas, found, strict=True)))

    async def _run_painter(
        self, jobs: list[tuple[_Running, JobRequest]]
    ) -> list[JobOutcome | None]:
        """Paint the jobs in one painter call, each with its own event writer and its own
        watcher (lease, cancel, timeout, shutdown); each outcome as lifecycle.settle says."""
        loop = asyncio.get_running_loop()
        outboxes: list[asyncio.Queue[JobEvent | None]] = [asyncio.Queue() for _ in jobs]
        publishers = [
            asyncio.create_task(self._publish(job.job_id, outbox))
            for (job, _), outbox in zip(jobs, outboxes, strict=True)
        ]
        watchers = [asyncio.create_task(self._watch(job)) for job, _ in jobs]
        items = [
            (job.job_id, BatchItem(request, self._progress(loop, job, outbox), job.cancel))
            for (job, request), outbox in zip(jobs, outboxes, strict=True)
        ]
        try:
            ran = await asyncio.to_thread(run_batch, self.painter, items)
        finally:
            for watcher in watchers:
                watcher.cancel()
            for outbox, publisher in zip(outboxes, publishers, strict=True):
                outbox.put_nowait(None)
                with contextlib.suppress(BaseException):
                    await publisher
        return [settle(outcome, job.why) for (job, _), outcome in zip(jobs, ran, strict=True)]

    @staticmethod
    def _progress(
        loop: asyncio.AbstractEventLoop, job: _Running, outbox: asyncio.Queue[JobEvent | None]
    ) -> ProgressCallback:
        def progress(event: JobEvent) -> None:
            loop.call_soon_threadsafe(outbox.put_nowait, stamp(event, job.job_id, job.started))

        return progress

    async def _watch(self, job: _Running) -> None:
        """Renew the lease; stop the painter for a cancel, the job timeout or a shutdown."""
        cfg, key = self.config, k.job_key(job.job_id)
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(cfg.poll_s)
            now = time.monotonic()
            if time.time() - job.started > cfg.job_timeout_s:
                job.interrupt("timeout")
            if self._stop_at is not None and now - self._stop_at >= self._grace_s:
                job.interrupt("shutdown")
            with contextlib.suppress(*DOWN_ERRORS):
                state, requested = await self.redis.hmget(key, ["state", "cancel_requested"])
                if state is None or requested is not None:
                    job.interrupt("user")
                if now - renewed >= cfg.lease_s / 3:
                    await self.redis.pexpire(k.lease_key(job.job_id), int(cfg.lease_s * 1000))
                    renewed = now

    async def _publish(self, job_id: str, outbox: asyncio.Queue[JobEvent | None]) -> None:
        """One writer per job keeps progress events in order; lost ones are only progress."""
        while (event := await outbox.get()) is not None:
            data = encode_event(event)
            with contextlib.suppress(*DOWN_ERRORS):
                if event.message:  # kept for followers who arrive later (lifecycle.replay)
                    await self.redis.hset(k.job_key(job_id), "note", data)
                await self.redis.xadd(
                    k.events_key(job_id), {"e": data}, maxlen=k.EVENTS_MAXLEN, approximate=True
                )

    async def _finish(
        self,
        job_id: str,
        user_id: str,
        outcome: JobOutcome,
        *,
        attempts: int,
        job: _Running | None = None,
        expired_only: bool = False,
    ) -> None:
        """Record the outcome; retried while Redis is away, because the result is the point."""
        now = time.time()
        started = job.started if job is not None else None
        event = terminal_event(
            job_id, outcome.state, reason=outcome.reason, started_at=started, finished_at=now
        )
        run_s = now - started if started is not None and outcome.state == JobState.DONE else None
        keys = [
            k.job_key(job_id),
            k.active_key(user_id),
            k.RUNNING,
            k.events_key(job_id),
            k.day_key(now),  # counted in the same script, before followers see the event
            k.RUNS,
            k.lease_key(job_id),
        ]
        args = [
            job_id,
            outcome.state.value,
            now,
            outcome.reason or "",
            outcome.result or b"",
            encode_event(replace(event, result=None)),  # the picture lives in the record only
            "" if run_s is None else round(run_s, 3),
            attempts,
            "1" if expired_only else "",
        ]
        delay = 0.2
        while True:
            try:
                if await self._scripts["FINISH"](keys=keys, args=args):
                    metrics.JOBS.labels(state=outcome.state.value).inc()
                    if run_s is not None:
                        metrics.RUN_SECONDS.observe(run_s)
                return
            except DOWN_ERRORS:
                log.warning("Redis unreachable while saving job %s; retrying", job_id)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _requeue(
        self,
        job_id: str,
        user_id: str,
        attempts: int,
        *,
        give_back: bool,
        expired_only: bool = False,
    ) -> bool:
        keys = [k.job_key(job_id), k.QUEUED, k.RUNNING, k.LINE, k.lease_key(job_id)]
        return bool(
            await self._scripts["REQUEUE"](
                keys=[*keys, k.active_key(user_id)],
                args=[job_id, attempts, int(give_back), int(expired_only)],
            )
        )

    # -- every worker's chores ---------------------------------------------------------------

    async def _reap(self) -> None:
        """Hand back the jobs of workers whose lease expired (they died), at most every half
        lease; a job that took down `max_attempts` workers fails as `worker_died`."""
        now = time.monotonic()
        if now - self._reaped_at < self.config.lease_s / 2:
            return
        self._reaped_at = now
        ids = [text(i) or "" for i in await self.redis.smembers(k.RUNNING)]
        if not ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.exists(k.lease_key(job_id))
                pipe.hmget(k.job_key(job_id), ["attempts", "user_id"])
            replies = await pipe.execute()
        for job_id, alive, (attempts_b, user_b) in zip(
            ids, replies[::2], replies[1::2], strict=True
        ):
            if alive:
                continue
            if attempts_b is None:  # the record is gone: nothing to paint
                await self.redis.srem(k.RUNNING, job_id)
                continue
            attempts, user = int(attempts_b), text(user_b) or ""
            if attempts >= self.config.limits.max_attempts:
                log_failure(job_id, WORKER_DIED, f"its worker died {attempts} times")
                outcome = JobOutcome(JobState.FAILED, reason=WORKER_DIED)
                await self._finish(job_id, user, outcome, attempts=attempts, expired_only=True)
            elif await self._requeue(job_id, user, attempts, give_back=False, expired_only=True):
                log.warning("job %s: its worker died (try %d); back in line", job_id, attempts)

    async def _heartbeat(self) -> None:
        """Tell `stats()` this worker is alive, and keep the queue-length gauge fresh."""
        while True:
            with contextlib.suppress(*DOWN_ERRORS):
                await self.redis.zadd(k.WORKERS, {self.config.name: time.time()})
                metrics.QUEUE_LENGTH.set(await self.redis.zcard(k.QUEUED))
            await asyncio.sleep(HEARTBEAT_S)


@dataclass
class WorkerHandle:
    """A worker running as a task in this loop (tests and benches)."""

    worker: RedisWorker
    task: asyncio.Task[None]

    async def close(self) -> None:
        """Like a stop with no grace: running jobs are handed back to the queue."""
        self.worker.stop(grace_s=0)
        await self.task


async def start_worker_task(config: WorkerConfig, painter: Painter) -> WorkerHandle:
    worker = RedisWorker(config, painter)
    return WorkerHandle(worker, asyncio.create_task(worker.run()))
