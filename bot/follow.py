"""Following jobs from the queue to their users' chats: one background delivery task per job
(bot.delivery does the talking), a watcher that notices when the queue is unreachable, and the
graceful stop.

The same code resumes jobs after a restart: `resume` follows every job the queue still holds
undelivered, and each delivery replays its job's state from the queue and its messages from the
store. While the queue is unreachable a delivery waits (the job is safe there) and tells its user
once per outage that the picture is delayed, not lost.

A graceful stop (`close`) never cuts a result upload short. An upload cut by the stop may still
reach the chat (Telegram keeps what it received), while the bot, which never heard back, saves
no sent mark, so the next start sends it again: that was the duplicate of issue 21, seen when
uploads took longer than the grace period. So once the stop begins no delivery starts an upload,
every upload in flight is waited for however long it takes (a Bot API request ends by its own
timeouts), and only then is the rest of each delivery given `grace_s`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from telegram.error import TelegramError
from telegram.ext import ExtBot

from bot.delivery import Delivery, Stopping
from bot.store import Store
from bot.tg import Blocked
from engine.observability.logs import log_event
from engine.queue import JobQueue, JobRecord, QueueUnavailable

log = logging.getLogger(__name__)
EDIT_INTERVAL_S = 3.0
QUIET_S = 1.0  # a job done this fast gets no status or preview messages, just its result
HEALTH_EVERY_S = 1.0  # how often the follower checks the queue while it has jobs to follow
RETRY_S = (1.0, 10.0)  # back-off (first, most) for a delivery whose queue calls fail


@dataclass
class ChatPacer:
    """Per-chat clock for status edits: Telegram flood-limits frequent edits in one chat."""

    interval_s: float = EDIT_INTERVAL_S
    next_at: dict[int, float] = field(default_factory=dict)

    def wait_s(self, chat_id: int) -> float:
        return max(0.0, self.next_at.get(chat_id, 0.0) - time.monotonic())

    def used(self, chat_id: int) -> None:
        self.next_at[chat_id] = time.monotonic() + self.interval_s


class Follower:
    """Starts and tracks one delivery task per job; `close()` stops them (jobs stay undelivered
    in the queue, so the next start resumes them), letting result uploads in flight finish.

    While it has jobs, one watcher task asks `queue.healthy()` every HEALTH_EVERY_S: each
    outage gets a number (`outage`), and a delivery tells its user once per number."""

    def __init__(
        self,
        bot: ExtBot[Any],
        queue: JobQueue,
        store: Store,
        pacer: ChatPacer | None = None,
        *,
        grace_s: float = 5.0,
    ):
        self.bot, self.queue, self.store = bot, queue, store
        self.pacer = pacer or ChatPacer()
        self.quiet_s = QUIET_S
        self.health_every_s = HEALTH_EVERY_S
        self.grace_s = grace_s
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.uploading: set[str] = set()  # jobs whose result upload is in flight
        self.upload_ended = asyncio.Event()
        self.stopping = False  # close() began: no new delivery, no new upload
        self.down = False  # the watcher's latest verdict: the queue is unreachable
        self.outage = 0  # numbers outages; a delivery tells its user once per number
        self.told: dict[str, int] = {}  # job -> the outage its user was told about
        self.watcher: asyncio.Task[None] | None = None

    def follow(self, job_id: str) -> None:
        if self.stopping:  # it stays undelivered in the queue: the next start follows it
            return
        if job_id not in self.tasks:
            task = asyncio.get_running_loop().create_task(self._guarded(job_id))
            self.tasks[job_id] = task
            task.add_done_callback(lambda _: self._done(job_id))
        if self.watcher is None or self.watcher.done():
            self.watcher = asyncio.get_running_loop().create_task(self._watch())

    def _done(self, job_id: str) -> None:
        self.tasks.pop(job_id, None)
        self.told.pop(job_id, None)

    def begin_upload(self, job_id: str) -> None:
        """A delivery is about to send its result: refused (`Stopping`) once close() began."""
        if self.stopping:
            raise Stopping(job_id)
        self.uploading.add(job_id)

    def end_upload(self, job_id: str) -> None:
        """The upload is over (its sent mark handed to the store, or it failed)."""
        self.uploading.discard(job_id)
        self.upload_ended.set()

    async def close(self) -> None:
        """Stop every delivery; never cut a result upload short (see the module docstring)."""
        self.stopping = True
        if self.watcher is not None:
            self.watcher.cancel()
        finishing = []
        for job_id, task in list(self.tasks.items()):
            if job_id in self.uploading:
                finishing.append(task)
            else:
                task.cancel()  # even if Python swallows it, the delivery cannot start an upload
        if self.uploading:
            log.info("letting %d result upload(s) finish before stopping", len(self.uploading))
        while self.uploading:
            self.upload_ended.clear()
            try:
                await asyncio.wait_for(self.upload_ended.wait(), self.grace_s)
            except TimeoutError:
                log.warning(
                    "still waiting for %d result upload(s) after %.1f s (jobs %s): not cutting "
                    "them short, Telegram may have them already",
                    len(self.uploading),
                    self.grace_s,
                    ", ".join(sorted(self.uploading)),
                )
        if finishing:  # their sent marks are saved: cleanup and acknowledgement get grace_s
            _, late = await asyncio.wait(finishing, timeout=self.grace_s)
            for task in late:
                task.cancel()  # the next start sees the sent mark and only acknowledges
        await asyncio.gather(*list(self.tasks.values()), return_exceptions=True)

    async def _watch(self) -> None:
        """Number the queue's outages while there are jobs to follow."""
        while self.tasks:
            healthy = await self.queue.healthy()
            if not healthy and not self.down:
                self.outage += 1
                log.warning("the job queue is unreachable; deliveries wait for it")
            elif healthy and self.down:
                log.info("the job queue is back")
            self.down = not healthy
            await asyncio.sleep(self.health_every_s)
        self.down = False

    async def _guarded(self, job_id: str) -> None:
        """Deliver; a Telegram error that outlived the retry policy (bot.pacing) ends this try,
        the job stays undelivered and the next start resumes it. An unreachable queue is waited
        out with back-off (the job is safe there); other failures get two more tries."""
        attempt, backoff = 1, RETRY_S[0]
        delivery = Delivery(self, job_id)
        while True:
            try:
                await delivery.run()
                return
            except asyncio.CancelledError:
                raise
            except Stopping:  # the job stays undelivered: the next start resumes it
                return
            except Blocked:
                await self._forget_blocked(job_id)
                return
            except TelegramError:
                log.exception("delivery of job %s failed; it resumes on the next start", job_id)
                return
            except QueueUnavailable:
                log.info("queue unreachable while delivering job %s; retrying", job_id)
                if not self.down:  # heard before the watcher did
                    self.down, self.outage = True, self.outage + 1
                await delivery.tell_delayed()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RETRY_S[1])
                delivery = delivery.again()
                continue
            except Exception:
                log.exception("delivery of job %s failed (attempt %d)", job_id, attempt)
                if attempt == 3:
                    return
                await asyncio.sleep(2.0 * attempt)
                attempt += 1
                delivery = delivery.again()

    async def _forget_blocked(self, job_id: str) -> None:
        job = await self.queue.get(job_id)
        if job is None:
            return
        user_id = job.request.user_id
        log_event(log, "user.blocked", user_id=user_id, job=job_id)
        await self.queue.forget(user_id)  # cancels and deletes every job of theirs
        await self.store.forget(user_id)


async def resume(follower: Follower, jobs: list[JobRecord]) -> None:
    """Follow every job the queue still holds for us (after a restart)."""
    for job in jobs:
        follower.follow(job.id)
    if jobs:
        log.info("resumed %d undelivered job(s)", len(jobs))
