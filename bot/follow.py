"""Following a job from the queue to the user's chat, in a background task per job.

One status message per job, edited in place (queued → progress → gone), at most once every
`EDIT_INTERVAL_S` per chat however fast the painter reports; one preview photo replaced at the end
of each scale; then the result, and only then `queue.acknowledge()`. The same code resumes jobs
after a restart: the queue replays each job's state, the store remembers its messages.

Delivery is at-least-once, with the duplicate window as small as the code can make it: the sent
mark is saved (synchronously, before any other await) the moment `send_photo` returns, and on a
graceful stop (`close()`) an upload in flight is allowed to finish within the grace period. Only
a kill -9 between Telegram storing the photo and the bot hearing so resends it after a restart.

While the queue is unreachable a delivery keeps waiting (the job is safe in Redis' append-only
file) and tells its user once per outage that the picture is delayed, not lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from telegram import InlineKeyboardMarkup, InputMediaPhoto, Message
from telegram.error import BadRequest, TelegramError
from telegram.ext import ExtBot

from bot import keyboards
from bot.store import JobMessages, Store
from bot.texts import t
from bot.tg import Blocked, call
from engine.observability.logs import log_event
from engine.queue import JobEvent, JobQueue, JobRecord, QueueUnavailable

log = logging.getLogger(__name__)
EDIT_INTERVAL_S = 3.0
BG: dict[str, Any] = {"rate_limit_args": True}  # background: user replies go first (bot.pacing)
QUIET_S = 1.0  # a job done this fast gets no status or preview messages, just its result
BAR_WIDTH = 10
_END = None  # end-of-stream marker in a follower's inbox
HEALTH_EVERY_S = 1.0  # how often the follower checks the queue while it has jobs to follow
RETRY_S = (1.0, 10.0)  # back-off (first, most) for a delivery whose queue calls fail


def bar(fraction: float) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * BAR_WIDTH)
    return "▓" * filled + "░" * (BAR_WIDTH - filled)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "…"
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


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
    in the queue, so the next start resumes them), letting result uploads in flight finish first.

    While it has jobs, one watcher task asks `queue.healthy()` every `HEALTH_EVERY_S`: each
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
        self.grace_s = grace_s
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.uploading: set[str] = set()  # jobs whose result is being sent: close() waits
        self.down = False  # the watcher's latest verdict: the queue is unreachable
        self.outage = 0  # numbers outages; a delivery tells its user once per number
        self.told: dict[str, int] = {}  # job -> the outage its user was told about
        self.watcher: asyncio.Task[None] | None = None

    def follow(self, job_id: str) -> None:
        if job_id not in self.tasks:
            task = asyncio.get_running_loop().create_task(self._guarded(job_id))
            self.tasks[job_id] = task
            task.add_done_callback(lambda _: self._done(job_id))
        if self.watcher is None or self.watcher.done():
            self.watcher = asyncio.get_running_loop().create_task(self._watch())

    def _done(self, job_id: str) -> None:
        self.tasks.pop(job_id, None)
        self.told.pop(job_id, None)

    async def close(self) -> None:
        """Stop every delivery, except that a result upload in flight may finish within
        `grace_s` (a deploy must not resend it: its sent mark is saved as soon as it returns)."""
        if self.watcher is not None:
            self.watcher.cancel()
        tasks = list(self.tasks.items())
        for job_id, task in tasks:
            if job_id not in self.uploading:
                task.cancel()
        finishing = [task for job_id, task in tasks if job_id in self.uploading]
        if finishing:
            log.info("letting %d result upload(s) finish before stopping", len(finishing))
            _, late = await asyncio.wait(finishing, timeout=self.grace_s)
            for task in late:
                task.cancel()
        await asyncio.gather(*(task for _, task in tasks), return_exceptions=True)

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
            await asyncio.sleep(HEALTH_EVERY_S)
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
        self.store.forget(user_id)


Inbox = asyncio.Queue[JobEvent | QueueUnavailable | None]


async def _pump(events: AsyncIterator[JobEvent], inbox: Inbox) -> None:
    """Move events into a queue, so waiting on it with a timeout never cancels the stream; an
    unreachable queue is handed on, for the delivery to wait it out and follow again."""
    try:
        async for event in events:
            inbox.put_nowait(event)
    except QueueUnavailable as exc:
        inbox.put_nowait(exc)
    finally:
        inbox.put_nowait(_END)


class Delivery:
    """One job's conversation with its chat."""

    def __init__(self, follower: Follower, job_id: str) -> None:
        self.f, self.job_id = follower, job_id
        self.messages = JobMessages()
        self.pending: JobEvent | None = None  # the latest status not shown yet
        self.pending_preview: bytes | None = None
        self.note: str | None = None  # the painter's latest message, shown under the progress
        self.quiet_until = time.monotonic() + follower.quiet_s
        self.shown: tuple[str, InlineKeyboardMarkup | None] | None = None
        self.known: JobRecord | None = None  # the job, once read from the queue
        self.chat_id, self.lang = 0, "en"

    @property
    def job(self) -> JobRecord:
        assert self.known is not None, "run() reads the job first"
        return self.known

    def again(self) -> Delivery:
        """A fresh try for the same job that keeps what this one knows (the job, what is shown)."""
        fresh = Delivery(self.f, self.job_id)
        fresh.known, fresh.chat_id, fresh.lang = self.known, self.chat_id, self.lang
        fresh.shown, fresh.note, fresh.quiet_until = self.shown, self.note, self.quiet_until
        return fresh

    async def tell_delayed(self) -> None:
        """Once per outage: the picture is delayed, not lost (it waits in the queue)."""
        if self.known is None or self.f.told.get(self.job_id) == self.f.outage:
            return
        self.f.told[self.job_id] = self.f.outage
        text = t(self.lang, "queue_delayed")
        with contextlib.suppress(TelegramError):
            await call(lambda: self.f.bot.send_message(self.chat_id, text, **BG))

    async def run(self) -> None:
        job = await self.f.queue.get(self.job_id)
        if job is None:
            self.f.store.drop_job(self.job_id)
            return
        self.known, self.chat_id = job, job.request.chat_id
        self.lang = str(job.request.meta.get("lang", "en"))
        self.messages = self.f.store.job_messages(self.job_id)
        if self.messages.sent:  # delivered just before a crash, not yet acknowledged
            await self._finish()
            return
        inbox: Inbox = asyncio.Queue()
        pump = asyncio.create_task(_pump(self.f.queue.events(self.job_id), inbox))
        try:
            while True:
                due = self._wait_s()  # wake up at least as often as the watcher looks
                timeout = HEALTH_EVERY_S if due is None else min(due, HEALTH_EVERY_S)
                try:
                    event = await asyncio.wait_for(inbox.get(), timeout)
                except TimeoutError:
                    if self.f.down:
                        await self.tell_delayed()
                    await self._flush()
                    continue
                if isinstance(event, QueueUnavailable):
                    raise event
                if event is None:
                    raise RuntimeError("event stream ended before the job did")
                if await self._on(event):
                    return
                await self._flush()
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    async def _on(self, event: JobEvent) -> bool:
        """Handle one event; True when the job is over and delivered."""
        if event.kind in ("queued", "position", "started", "progress"):
            if event.message:
                self.note = _note(self.lang, event)
            if event.preview:
                self.pending_preview = event.preview
            self.pending = event
        elif event.kind == "done":
            await self._deliver(event)
            return True
        elif event.kind == "failed":
            markup = keyboards.failure(self.lang, reason_code(event.reason))
            await self._final(failure_text(self.lang, event.reason), markup)
            return True
        elif event.kind == "cancelled":
            await self._final(t(self.lang, "cancelled"))
            return True
        return False

    def _status(self, event: JobEvent) -> tuple[str, InlineKeyboardMarkup | None]:
        """The status message for a queued / started / progress event."""
        cancel = keyboards.cancel(self.lang, self.job_id)
        if event.kind in ("queued", "position"):
            minutes = max(1, round((event.eta_s or 60) / 60))
            return t(self.lang, "queued", position=event.position or 1, minutes=minutes), cancel
        if event.kind == "started":
            return t(self.lang, "started"), cancel
        fraction = event.fraction or 0.0
        one_scale = (event.scales or 1) == 1  # "Scale 1/1" would say nothing
        text = t(
            self.lang,
            "progress_one_scale" if one_scale else "progress",
            bar=bar(fraction),
            percent=round(fraction * 100),
            scale=event.scale or 1,
            scales=event.scales or 1,
            eta=duration(event.eta_s),
        )
        return (f"{text}\n{self.note}" if self.note else text), cancel

    # -- the status message ----------------------------------------------------------------

    def _wait_s(self) -> float | None:
        """How long the loop may sleep before something pending is due (None: nothing is)."""
        if self.pending is None and self.pending_preview is None:
            return None
        quiet = self.quiet_until - time.monotonic()
        return max(quiet, self.f.pacer.wait_s(self.chat_id) if self.pending else 0.0, 0.0)

    async def _flush(self) -> None:
        """Show the latest pending status (if this chat's pacer allows it) and preview, once the
        job has outlived the quiet period; until then a fast job costs no messages."""
        if time.monotonic() < self.quiet_until:
            return
        if self.pending_preview is not None:
            image, self.pending_preview = self.pending_preview, None
            await self._preview(image)
        if self.pending is None:
            return
        status = self._status(self.pending)
        if status == self.shown:
            self.pending = None
            return
        if self.messages.status_msg is not None and self.f.pacer.wait_s(self.chat_id) > 0:
            return  # keep it pending; the loop wakes up when the chat may be edited again
        self.pending = None
        await self._show(*status)

    async def _show(self, text: str, markup: InlineKeyboardMarkup | None) -> None:
        bot, chat = self.f.bot, self.chat_id
        self.f.pacer.used(chat)
        msg_id = self.messages.status_msg
        if msg_id is not None:
            try:
                await call(
                    lambda: bot.edit_message_text(
                        text, chat_id=chat, message_id=msg_id, reply_markup=markup, **BG
                    )
                )
                self.shown = (text, markup)
                return
            except BadRequest:  # the user deleted it, or it is too old: start a new one
                pass
        message = await call(lambda: bot.send_message(chat, text, reply_markup=markup, **BG))
        self.shown = (text, markup)
        if isinstance(message, Message):
            self.messages.status_msg = message.message_id
            self._save()

    async def _preview(self, image: bytes) -> None:
        bot, chat, msg_id = self.f.bot, self.chat_id, self.messages.preview_msg
        if msg_id is not None:
            with contextlib.suppress(BadRequest):
                await call(
                    lambda: bot.edit_message_media(
                        InputMediaPhoto(image), chat_id=chat, message_id=msg_id, **BG
                    )
                )
                return
        message = await call(lambda: bot.send_photo(chat, image, disable_notification=True, **BG))
        if isinstance(message, Message):
            self.messages.preview_msg = message.message_id
            self._save()

    def _save(self) -> None:
        self.f.store.set_job_messages(self.job_id, self.job.request.user_id, self.messages)

    # -- the end ---------------------------------------------------------------------------

    async def _deliver(self, event: JobEvent) -> None:
        if not event.result:
            await self._final(failure_text(self.lang, "painter_error"))
            return
        meta, bot, chat = self.job.request.meta, self.f.bot, self.chat_id
        keep_colors = bool(self.job.request.options.preserve_colors)
        title = meta.get("title") or t(self.lang, "own_style_title")
        caption = t(
            self.lang,
            "caption",
            title=title,
            artist=meta.get("artist") or "",
            seconds=round(event.elapsed_s or 0),
        ).replace(" — \n", "\n")
        image = event.result
        markup = keyboards.result(self.lang, keep_colors)
        self.f.uploading.add(self.job_id)  # a graceful stop lets this finish (Follower.close)
        try:
            await call(
                lambda: bot.send_photo(chat, image, caption=caption, reply_markup=markup, **BG)
            )
            # Telegram has it: mark it before any other await, so that only a kill -9 in the
            # upload itself can resend it. The file copy below is a courtesy, never resent.
            self.messages.sent = True
            self._save()
            if meta.get("as_file"):
                name = f"orsay-{meta.get('slug') or 'own'}.jpg"
                await call(lambda: bot.send_document(chat, image, filename=name, **BG))
        finally:
            self.f.uploading.discard(self.job_id)
        log_event(log, "job.delivered", job=self.job_id, user_id=self.job.request.user_id)
        await self._cleanup(delete_status=True)
        await self._finish()

    async def _final(self, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        self.pending = self.pending_preview = None
        await self._show(text, markup)
        self.messages.sent = True
        self._save()
        await self._cleanup(delete_status=False)
        await self._finish()

    async def _cleanup(self, *, delete_status: bool) -> None:
        """Remove the preview (and the status) message; failures here are cosmetic."""
        ids = [self.messages.preview_msg]
        if delete_status:
            ids.append(self.messages.status_msg)
        for msg_id in ids:
            if msg_id is not None:
                with contextlib.suppress(TelegramError, Blocked):
                    await self.f.bot.delete_message(self.chat_id, msg_id, **BG)

    async def _finish(self) -> None:
        await self.f.queue.acknowledge(self.job_id)
        self.f.store.drop_job(self.job_id)


# Reason codes (engine.errors codes, engine.queue.lifecycle codes) -> the text key saying it.
# A painter's failure carries its code only: refusals whose texts need numbers (sizes, limits)
# read as "could not use that picture" here; the bot refuses those itself before submitting.
REASON_TEXTS = {
    "not_an_image": "not_an_image",
    "corrupt_image": "corrupt_image",
    "image_too_large": "bad_image",
    "image_too_small": "bad_image",
    "file_too_large": "bad_image",
    "unsupported_format": "bad_image",
    "image_too_costly": "image_too_costly",
    "bad_image": "bad_image",
    "style_not_found": "style_not_found",
    "gallery_error": "gallery_error",
    "weights_error": "weights_error",
    "timeout": "timeout",
    "worker_died": "worker_died",
    "painter_error": "painter_error",
}
NOTICE_TEXTS = {"oom_retry": "note_oom_retry"}  # painter notices the bot can translate


def reason_code(reason: str | None) -> str:
    """A failed job's reason as the bot knows it: an unknown or missing one is a painter error."""
    return reason if reason in REASON_TEXTS else "painter_error"


def failure_text(lang: str, reason: str | None) -> str:
    """What the user reads when a job failed: the specific reason, in their language."""
    return t(lang, "done_failed", reason=t(lang, REASON_TEXTS[reason_code(reason)]))


def _note(lang: str, event: JobEvent) -> str:
    """A painter message for the status: translated when its notice is known, else as said."""
    key = NOTICE_TEXTS.get(event.notice or "")
    if key is not None:
        return t(lang, key, size=event.size or "?")
    return t(lang, "painter_note", message=event.message)


async def resume(follower: Follower, jobs: list[JobRecord]) -> None:
    """Follow every job the queue still holds for us (after a restart)."""
    for job in jobs:
        follower.follow(job.id)
    if jobs:
        log.info("resumed %d undelivered job(s)", len(jobs))
