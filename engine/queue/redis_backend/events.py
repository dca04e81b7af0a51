"""Following one job in Redis: replay its state, then read its event stream, reconnecting alone.

A follower reads the job's stream `orsay:events:<id>` from where it stopped (so a lost connection
misses nothing), and while the job waits also the shared `orsay:line` stream, which only says
"the line moved"; its place is then re-read at most every POSITION_EVERY_S, so hundreds of
followers do not all query Redis on every submit. `done` events are written without the picture
(it lives once, in the job record); the follower attaches it, so `done` carries the result here
exactly as in the embedded backend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from engine.queue.codec import decode_event
from engine.queue.lifecycle import replay
from engine.queue.policy import eta_s
from engine.queue.redis_backend import keys as k
from engine.queue.redis_backend.store import (
    BLOCK_MS,
    DOWN_ERRORS,
    STATUS_FIELDS,
    job_from_hash,
    recent_run_times,
    status_from_fields,
    text,
)
from engine.queue.seam import JobEvent, JobState, QueueUnavailable

log = logging.getLogger(__name__)
POSITION_EVERY_S = 1.0  # a chat cannot show position changes faster anyway
BACKOFF_S = (0.2, 5.0)  # reconnect delay: first, longest
STEP_TIMEOUT_S = BLOCK_MS / 1000 + 10.0  # an XREAD blocks BLOCK_MS; longer than this is a wedge


class _Cursor:
    """Where one follower is: the job's state as it last heard it, and its places in streams."""

    def __init__(self, redis: Any, job_id: str) -> None:
        self.redis, self.job_id = redis, job_id
        self.stream = k.events_key(job_id)
        self.last_id: bytes | str | None = None  # None: replay first
        self.line_id: bytes | str = "$"
        self.state: JobState | None = None
        self.position: int | None = None
        self.line_moved = False
        self.checked_at = 0.0

    async def catch_up(self) -> list[JobEvent] | None:
        """The replay of the job's current state, and the stream positions to follow it from;
        None if there is no such job."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(k.job_key(self.job_id), list(STATUS_FIELDS))
            pipe.xrevrange(self.stream, count=1)
            pipe.zrank(k.QUEUED, self.job_id)
            pipe.xrevrange(k.LINE, count=1)
            pipe.hget(k.job_key(self.job_id), "note")
            fields, last, rank, line, note = await pipe.execute()
        status = status_from_fields(fields)
        if b"state" not in status:
            return None
        job = job_from_hash(status)
        if job.state == JobState.DONE:
            job.result = await self.redis.hget(k.job_key(self.job_id), "result")
        position = None if rank is None else int(rank) + 1
        eta = None
        if job.state == JobState.QUEUED:
            position = position or 1
            eta = eta_s(position, (await recent_run_times(self.redis)).estimate())
        # the cursor moves only once every read is done: a call cut short replays again
        self.state, self.position, self.checked_at = job.state, position, time.monotonic()
        self.last_id = last[0][0] if last else "0-0"
        self.line_id = line[0][0] if line else "0-0"
        return replay(
            job,
            position=self.position,
            eta_s=eta,
            last_progress=decode_event(last[0][1][b"e"]) if last else None,
            last_note=decode_event(note) if note else None,
        )

    def _streams(self) -> tuple[dict[str, bytes | str], int]:
        """What to read and how long to block: a waiting job also listens to the line, unless
        it already knows the line moved (then it wakes when its next position check is due)."""
        assert self.last_id is not None
        streams: dict[str, bytes | str] = {self.stream: self.last_id}
        block = BLOCK_MS
        if self.state == JobState.QUEUED:
            if self.line_moved:
                due = self.checked_at + POSITION_EVERY_S - time.monotonic()
                block = max(1, min(BLOCK_MS, int(due * 1000)))
            else:
                streams[k.LINE] = self.line_id
        return streams, block

    async def read(self, client: Any) -> list[JobEvent]:
        """The next events, after blocking at most BLOCK_MS; the last one may be terminal.

        All or nothing: if any call fails (or the round is cut short), the cursor goes back to
        where it was, so the same entries are read again. Moving it entry by entry lost a
        `done` whose picture could not be fetched in a Redis restart: the job was finished and
        its follower waited for it forever."""
        saved = (self.last_id, self.line_id, self.line_moved, self.state, self.position)
        saved_checked = self.checked_at
        try:
            return await self._read(client)
        except BaseException:
            self.last_id, self.line_id, self.line_moved, self.state, self.position = saved
            self.checked_at = saved_checked
            raise

    async def _read(self, client: Any) -> list[JobEvent]:
        streams, block = self._streams()
        reply = await client.xread(streams, block=block, count=100)
        if not reply and not await self.redis.exists(k.job_key(self.job_id)):
            return [JobEvent(self.job_id, "cancelled")]  # forgotten while we listened
        events: list[JobEvent] = []
        for name, entries in reply or []:
            if text(name) == k.LINE:
                self.line_id, self.line_moved = entries[-1][0], True
                continue
            for entry_id, fields in entries:
                self.last_id = entry_id
                event = decode_event(fields[b"e"])
                if self.state == JobState.RUNNING and event.kind in ("queued", "started"):
                    continue  # the replay already said so
                if event.kind == "started":
                    self.state = JobState.RUNNING
                events.append(await self._with_result(event))
                if event.terminal:
                    return events
        moved = await self._position_update()
        return [*events, moved] if moved else events

    async def _with_result(self, event: JobEvent) -> JobEvent:
        if event.kind != "done" or event.result is not None:
            return event
        result = await self.redis.hget(k.job_key(self.job_id), "result")
        return replace(event, result=result)

    async def _position_update(self) -> JobEvent | None:
        due = time.monotonic() - self.checked_at >= POSITION_EVERY_S
        if self.state != JobState.QUEUED or not self.line_moved or not due:
            return None
        self.line_moved, self.checked_at = False, time.monotonic()
        rank = await self.redis.zrank(k.QUEUED, self.job_id)
        if rank is None or int(rank) + 1 == self.position:
            return None
        self.position = int(rank) + 1
        eta = eta_s(self.position, (await recent_run_times(self.redis)).estimate())
        return JobEvent(self.job_id, "position", position=self.position, eta_s=eta)


async def follow(queue: Any, job_id: str) -> AsyncIterator[JobEvent]:
    """Replay, then follow the job's stream until its terminal event; waits out Redis outages.
    `queue` gives `.redis` (commands) and `.follow_client` (blocking reads, its own pool).

    Each round trip is bounded by STEP_TIMEOUT_S on top of the client's own socket timeouts: a
    call that outlives it is logged and retried like an outage, so no wedge can silence a job."""
    cursor = _Cursor(queue.redis, job_id)
    backoff = BACKOFF_S[0]
    while True:
        try:
            async with asyncio.timeout(STEP_TIMEOUT_S):
                events = await _step(queue, cursor)
        except TimeoutError:  # before DOWN_ERRORS: the builtin TimeoutError is an OSError
            log.warning(
                "following job %s: Redis did not answer within %.0f s; reconnecting",
                job_id,
                STEP_TIMEOUT_S,
            )
            events = None
        except DOWN_ERRORS as exc:
            log.info("lost Redis while following job %s (%r); reconnecting", job_id, exc)
            events = None
        if events is None:
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_S[1])
            continue
        backoff = BACKOFF_S[0]
        for event in events:
            yield event
            if event.terminal:
                return
        if cursor.last_id is None:  # catch_up found no such job
            return


async def _step(queue: Any, cursor: _Cursor) -> list[JobEvent]:
    """One round trip: the replay if the cursor has none yet, else the next events."""
    if cursor.last_id is None:
        replayed = await cursor.catch_up()
        return replayed or []
    client = queue.follow_client
    if client is None:
        raise QueueUnavailable("the queue is closed")
    return await cursor.read(client)
