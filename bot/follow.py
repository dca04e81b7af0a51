"""Following jobs from the queue to their users' chats: one background delivery task per job
(bot.delivery does the talking), a watcher that notices when the queue is unreachable, and the
stop.

The same code resumes jobs after a restart: `resume` follows every job the queue still holds
undelivered, and each delivery replays its job's state from the queue and its messages from the
store. While the queue is unreachable a delivery waits (the job is safe there) and tells its user
once per outage that the picture is delayed, not lost. A delivery whose Telegram calls failed past
the retry policy (bot.pacing) is tried again, backing off, for as long as the bot runs.

The stop has one deadline (bot.pacing.StopDeadline, ORSAY_STOP_S from SIGTERM). An upload cut
short may still reach the chat (Telegram keeps what it received) while the bot, which never heard
back, saves no sent mark, so the next start sends it again: issue 21's duplicate. So once the stop
begins (`stop`) no delivery starts an upload, and `close` lets the uploads in flight run to the
deadline's cut-off, all of them within the same bound (the limiter cuts each Telegram call there,
its retries and flood waits included); only an upload still unanswered then is cut. Every other
delivery ends at once: cancelled, and by the `stopping` flag where Python lost the cancel.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import ExtBot

from bot.delivery import Delivery, Stopping
from bot.pacing import StopDeadline
from bot.store import Store
from bot.tg import Blocked, error_kind, retry_after_s, transient
from engine.observability.logs import log_event
from engine.queue import JobQueue, JobRecord, QueueUnavailable

log = logging.getLogger(__name__)
EDIT_INTERVAL_S = 3.0
QUIET_S = 1.0  # a job done this fast gets no status or preview messages, just its result
HEALTH_EVERY_S = 1.0  # how often the follower checks the queue while it has jobs to follow
RETRY_S = (1.0, 10.0)  # back-off (first, most) for a delivery whose queue calls fail
TELEGRAM_RETRY_S = (5.0, 300.0)  # back-off (first, most) for one whose Telegram calls failed
ATTEMPTS = 3  # tries of a delivery that failed otherwise (a bug, a request Telegram refuses)


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
    in the queue, so the next start resumes them), letting result uploads in flight run until
    the stop's cut-off. `deadline` is the stop's, shared with the bot's limiter (bot.pacing).

    While it has jobs, one watcher task asks `queue.healthy()` every HEALTH_EVERY_S: each
    outage gets a number (`outage`), and a delivery tells its user once per number."""

    def __init__(
        self,
        bot: ExtBot[Any],
        queue: JobQueue,
        store: Store,
        pacer: ChatPacer | None = None,
        *,
        deadline: StopDeadline | None = None,
    ):
        self.bot, self.queue, self.store = bot, queue, store
        self.pacer = pacer or ChatPacer()
        self.quiet_s = QUIET_S
        self.health_every_s = HEALTH_EVERY_S
        self.deadline = deadline or StopDeadline()
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.uploading: set[str] = set()  # jobs whose result upload is in flight
        self.stopping = False  # the stop began: no new delivery, no new upload
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
        """A delivery is about to send its result: refused (`Stopping`) once the stop began."""
        if self.stopping:
            raise Stopping(job_id)
        self.uploading.add(job_id)

    def end_upload(self, job_id: str) -> None:
        """The upload is over (its sent mark handed to the store, or it failed)."""
        self.uploading.discard(job_id)

    def stop(self) -> None:
        """The stop begins (SIGTERM): no delivery starts an upload or sends anything from now on,
        and the deadline's clock runs."""
        self.stopping = True
        self.deadline.begin()

    async def close(self) -> None:
        """Stop every delivery by the stop's deadline (module docstring): the uploads in flight
        run until the cut-off, the rest end now."""
        self.stop()
        if self.watcher is not None:
            self.watcher.cancel()
        for job_id, task in list(self.tasks.items()):
            if job_id not in self.uploading:
                task.cancel()  # if Python loses the cancel, the `stopping` flag ends it
        if self.uploading:
            log.info(
                "letting %d result upload(s) finish, %.0f s at most",
                len(self.uploading),
                self.deadline.calls_left(),
            )
        if not self.tasks:
            return
        # an upload's calls end by the cut-off by themselves; its mark and ack get half the rest
        ends = self.deadline.left() - self.deadline.reserve_s / 2
        _, late = await asyncio.wait(list(self.tasks.values()), timeout=max(0.0, ends))
        if late:
            log.warning("%d deliveries did not end by the stop's deadline: cut", len(late))
            for task in late:
                task.cancel()
            await asyncio.wait(late, timeout=max(0.0, self.deadline.left()))

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
        """Deliver, trying again until it is done while the bot runs. An unreachable queue is
        waited out (the job is safe there); a Telegram failure that outlived the retry policy
        (bot.pacing) is tried again with back-off, a flood wait honoured; any other failure (a
        bug, a request Telegram refuses) gets ATTEMPTS tries, then waits for the next start.
        Once the bot stops nothing is tried again: the job stays undelivered for the next start."""
        failures, queue_backoff, telegram_backoff = 0, RETRY_S[0], TELEGRAM_RETRY_S[0]
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
            except QueueUnavailable:
                if self.stopping:
                    return
                log.info("queue unreachable while delivering job %s; retrying", job_id)
                if not self.down:  # heard before the watcher did
                    self.down, self.outage = True, self.outage + 1
                await delivery.tell_delayed()
                wait, queue_backoff = queue_backoff, min(queue_backoff * 2, RETRY_S[1])
            except Exception as exc:
                if self.stopping:
                    return
                if transient(exc) or isinstance(exc, RetryAfter):
                    wait = max(telegram_backoff, _flood_wait_s(exc))
                    telegram_backoff = min(telegram_backoff * 2, TELEGRAM_RETRY_S[1])
                    log.warning(
                        "delivery of job %s failed (%s); trying again in %.0f s",
                        job_id,
                        error_kind(exc),
                        wait,
                    )
                else:
                    failures += 1
                    if failures == ATTEMPTS:
                        log.exception(
                            "delivery of job %s failed; it resumes on the next start", job_id
                        )
                        return
                    log.exception("delivery of job %s failed (attempt %d)", job_id, failures)
                    wait = 2.0 * failures
            await asyncio.sleep(wait)
            delivery = delivery.again()

    async def _forget_blocked(self, job_id: str) -> None:
        job = await self.queue.get(job_id)
        if job is None:
            return
        user_id = job.request.user_id
        log_event(log, "user.blocked", user_id=user_id, job=job_id)
        await self.queue.forget(user_id)  # cancels and deletes every job of theirs
        await self.store.forget(user_id)


def _flood_wait_s(exc: Exception) -> float:
    return retry_after_s(exc) if isinstance(exc, RetryAfter) else 0.0


async def resume(follower: Follower, jobs: list[JobRecord]) -> None:
    """Follow every job the queue still holds for us (after a restart)."""
    for job in jobs:
        follower.follow(job.id)
    if jobs:
        log.info("resumed %d undelivered job(s)", len(jobs))
