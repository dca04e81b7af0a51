"""One job's conversation with its chat, from the queue's events: a status message edited in
place (queued → progress → gone), at most once per `EDIT_INTERVAL_S` per chat however fast the
painter reports; a preview photo replaced at the end of each scale; then the result, or what
went wrong, and only then `queue.acknowledge()`. A job done within the quiet period (QUIET_S)
gets no status or preview messages at all, just its result.

The status and the previews are optional: one that fails (after bot.pacing's retries) is logged
and skipped, never the end of the delivery. A preview that fails turns previews off for the job:
each try is an upload on a link that has just failed, and one that reached the chat unanswered
has no id the bot could delete it by.

The result is sent at least once where Telegram surely did not get it (bot.follow tries the
delivery again) and at most once where it may have: a read timeout after the whole upload
(bot.tg.maybe_sent) is not retried (bot.pacing) and counts as sent. The sent mark is handed to the
store the moment the upload returns, before any other await (the store writes it even if this
task is cancelled then). Once the bot is stopping no upload starts and a delivery ends at its
next event (a cancel alone can be lost, see `_next`); the upload in flight has until the stop's
cut-off (bot.pacing.StopDeadline), and one cut there, with no mark saved, is sent again at the
next start. A delivered job's messages row keeps its sent mark (the store drops it days later),
so following a delivered job again, say for a replayed press, sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any

from telegram import InlineKeyboardMarkup, InputMediaPhoto, Message
from telegram.error import BadRequest, TelegramError

from bot import keyboards
from bot.job_texts import bar, duration, failure_text, painter_note, reason_code
from bot.store import JobMessages
from bot.texts import t
from bot.tg import Blocked, call, error_kind, maybe_sent
from engine.observability.logs import log_event
from engine.presets import PRINT
from engine.queue import JobEvent, JobRecord, QueueUnavailable

if TYPE_CHECKING:
    from bot.follow import Follower

log = logging.getLogger(__name__)
BG: dict[str, Any] = {"rate_limit_args": True}  # background: user replies go first (bot.pacing)
Inbox = asyncio.Queue[JobEvent | Exception]


class Stopping(Exception):
    """The bot is stopping: this delivery must not start its upload (the next start will)."""


async def _pump(events: AsyncIterator[JobEvent], inbox: Inbox) -> None:
    """Move events into a queue, so waiting on it with a timeout never cancels the stream; an
    unreachable queue is handed on, for the delivery to wait it out and follow again, and so is
    the stream's end."""
    try:
        async for event in events:
            inbox.put_nowait(event)
    except QueueUnavailable as exc:
        inbox.put_nowait(exc)
    finally:
        inbox.put_nowait(RuntimeError("event stream ended before the job did"))


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
        self.previews = True  # off once a preview failed (module docstring)

    @property
    def job(self) -> JobRecord:
        assert self.known is not None, "run() reads the job first"
        return self.known

    def again(self) -> Delivery:
        """A fresh try for the same job that keeps what this one knows (the job, what is shown)."""
        fresh = Delivery(self.f, self.job_id)
        fresh.known, fresh.chat_id, fresh.lang = self.known, self.chat_id, self.lang
        fresh.shown, fresh.note, fresh.quiet_until = self.shown, self.note, self.quiet_until
        fresh.previews = self.previews
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
            await self.f.store.drop_job(self.job_id)
            return
        self.known, self.chat_id = job, job.request.chat_id
        self.lang = str(job.request.meta.get("lang", "en"))
        self.messages = await self.f.store.job_messages(self.job_id)
        if self.messages.sent:  # delivered before (a crash, a stop, a replayed press)
            await self._finish()
            return
        inbox: Inbox = asyncio.Queue()
        pump = asyncio.create_task(_pump(self.f.queue.events(self.job_id), inbox))
        try:
            while True:
                event = await self._next(inbox)
                if event is None and self.f.down:
                    await self.tell_delayed()
                if event is not None and await self._on(event):
                    return
                await self._flush()
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    async def _next(self, inbox: Inbox) -> JobEvent | None:
        """The next event; None when none came before something pending is due or the watcher's
        next look. `Stopping` once the bot stops: Python 3.11's wait_for returns an event that
        came in the loop iteration of a cancel and drops the cancel, so the flag, not the cancel,
        is what ends a stopped delivery."""
        due = self._wait_s()
        every = self.f.health_every_s
        try:
            item = await asyncio.wait_for(inbox.get(), every if due is None else min(due, every))
        except TimeoutError:
            item = None
        if self.f.stopping:
            raise Stopping(self.job_id)
        if isinstance(item, Exception):  # the queue is unreachable, or the stream ended
            raise item
        return item

    async def _on(self, event: JobEvent) -> bool:
        """Handle one event; True when the job is over and delivered."""
        if event.kind in ("queued", "position", "started", "progress"):
            if event.message:
                self.note = painter_note(self.lang, event)
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
            if self.previews:
                self.previews = await self._optional("preview", self._preview(image))
        if self.pending is None:
            return
        status = self._status(self.pending)
        if status == self.shown:
            self.pending = None
            return
        if self.messages.status_msg is not None and self.f.pacer.wait_s(self.chat_id) > 0:
            return  # keep it pending; the loop wakes up when the chat may be edited again
        self.pending = None
        await self._optional("status", self._show(*status))

    async def _optional(self, what: str, step: Awaitable[object]) -> bool:
        """Run a step the user can do without (the status, a preview): False, logged, when
        Telegram failed it past the retry policy; the delivery goes on."""
        try:
            await step
        except TelegramError as exc:
            log_event(
                log,
                "job.message_skipped",
                level=logging.WARNING,
                job=self.job_id,
                what=what,
                error=error_kind(exc),
            )
            return False
        return True

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
            await self._save()

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
            await self._save()

    async def _save(self) -> None:
        await self.f.store.set_job_messages(self.job_id, self.job.request.user_id, self.messages)

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
        name = f"orsay-{meta.get('slug') or 'own'}.jpg"
        printed = self.job.request.options.quality == PRINT
        self.f.begin_upload(self.job_id)  # Stopping once the bot stops: nothing was sent
        try:
            if printed:  # a print is a file: a photo message would be recompressed and shrunk
                send = bot.send_document(
                    chat, image, filename=name, caption=caption, reply_markup=markup, **BG
                )
            else:
                send = bot.send_photo(chat, image, caption=caption, reply_markup=markup, **BG)
            await self._upload(send)
        finally:
            self.f.end_upload(self.job_id)
        if meta.get("as_file") and not printed:  # a courtesy copy: at most once, optional
            await self._optional(
                "copy", call(lambda: bot.send_document(chat, image, filename=name, **BG))
            )
        log_event(log, "job.delivered", job=self.job_id, user_id=self.job.request.user_id)
        await self._cleanup(delete_status=True)
        await self._finish()

    async def _upload(self, send: Awaitable[object]) -> None:
        """Send the result and mark it sent: once Telegram has it, or may have it (a read
        timeout after the whole upload: at most once, module docstring). The mark is handed to
        the store before any other await, so only a kill -9 in the upload can resend it."""
        try:
            await call(lambda: send)
        except TelegramError as exc:
            if not maybe_sent(exc):
                raise
            log_event(
                log,
                "job.delivery_unconfirmed",
                level=logging.WARNING,
                job=self.job_id,
                user_id=self.job.request.user_id,
            )
        self.messages.sent = True
        await self._save()

    async def _final(self, text: str, markup: InlineKeyboardMarkup | None = None) -> None:
        self.pending = self.pending_preview = None
        await self._show(text, markup)
        self.messages.sent = True
        await self._save()
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
        await self.f.store.finish_job(self.job_id)
