"""The embedded queue's event stream: in-process pub/sub with replay, and place-in-line updates.

Events are published on the bot's event loop (the painter thread hands them over with
`publish_threadsafe`); each follower has its own asyncio queue. A new follower first hears the
replay of the job's stored state (engine.queue.lifecycle.replay), then the live events, minus the
ones the replay already covered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from engine.queue.lifecycle import replay
from engine.queue.policy import RunTimes, eta_s
from engine.queue.seam import JobEvent, JobRecord, JobState

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Subscriber:
    queue: asyncio.Queue[JobEvent] = field(default_factory=asyncio.Queue)
    last_position: int | None = None


class EventHub:
    """Followers of jobs in this process. `order()` reads the waiting line (off the loop)."""

    def __init__(
        self,
        order: Callable[[], Awaitable[list[str]]],
        get: Callable[[str], Awaitable[JobRecord | None]],
        run_times: Callable[[], RunTimes],
    ) -> None:
        self._order, self._get, self._run_times = order, get, run_times
        self._loop: asyncio.AbstractEventLoop | None = None
        self._subs: dict[str, set[_Subscriber]] = {}
        self._last_progress: dict[str, JobEvent] = {}
        self._last_note: dict[str, JobEvent] = {}  # the painter's latest message, per job
        self._refresh_pending = False
        self._tasks: set[asyncio.Task[None]] = set()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    async def follow(self, job_id: str) -> AsyncIterator[JobEvent]:
        sub = _Subscriber()
        self._subs.setdefault(job_id, set()).add(sub)  # before reading: nothing falls between
        try:
            job = await self._get(job_id)
            if job is None:
                return
            position = eta = None
            if job.state == JobState.QUEUED:
                order = await self._order()
                position = order.index(job_id) + 1 if job_id in order else 1
                eta = eta_s(position, self._run_times().estimate())
                sub.last_position = position
            events = replay(
                job,
                position=position,
                eta_s=eta,
                last_progress=self._last_progress.get(job_id),
                last_note=self._last_note.get(job_id),
            )
            for event in events:
                yield event
            if events[-1].terminal:
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

    # -- publishing (on the loop) ------------------------------------------------------------

    def publish(self, event: JobEvent) -> None:
        if event.kind == "progress":
            self._last_progress[event.job_id] = event
            if event.message:
                self._last_note[event.job_id] = event
        elif event.terminal:
            self._last_progress.pop(event.job_id, None)
            self._last_note.pop(event.job_id, None)
        for sub in self._subs.get(event.job_id, ()):
            sub.queue.put_nowait(event)

    def publish_threadsafe(self, event: JobEvent) -> None:
        self._call_soon_threadsafe(self.publish, event)

    def line_moved(self) -> None:
        """Tell followers of waiting jobs that their place in line moved; coalesced, so a burst
        of submits costs one query. Safe to call from any thread."""
        self._call_soon_threadsafe(self._schedule_refresh)

    def _call_soon_threadsafe(self, fn: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(fn, *args)

    def _schedule_refresh(self) -> None:
        if self._refresh_pending or not self._subs:
            return
        self._refresh_pending = True
        task = asyncio.get_running_loop().create_task(self._refresh_positions())
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _refresh_positions(self) -> None:
        try:
            order = await self._order()
        except Exception:
            log.exception("position refresh failed")
            return
        finally:
            self._refresh_pending = False
        run_s = self._run_times().estimate()
        for position, job_id in enumerate(order, start=1):
            for sub in self._subs.get(job_id, ()):
                if sub.last_position is not None and sub.last_position != position:
                    sub.last_position = position
                    eta = eta_s(position, run_s)
                    sub.queue.put_nowait(JobEvent(job_id, "position", position=position, eta_s=eta))
