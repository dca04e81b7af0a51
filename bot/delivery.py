"""One job's conversation with its chat, from the queue's events: a status message edited in
place (queued → progress → gone), at most once per `EDIT_INTERVAL_S` per chat however fast the
painter reports; a preview photo replaced at the end of each scale; then the result, or what
went wrong, and only then `queue.acknowledge()`. A job done within the quiet period (QUIET_S)
gets no status or preview messages at all, just its result.

Delivery is at-least-once, with the duplicate window as small as the code can make it: the sent
mark is handed to the store the moment `send_photo` returns, before any other await (the store
writes it even if this task is cancelled then), and a graceful stop waits for every upload in
flight (bot.follow). Only a kill -9 between Telegram storing the photo and the bot hearing so
resends it after a restart. A delivered job's messages row keeps its sent mark (the store drops
it days later), so following a delivered job again, say for a replayed press, sends nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from telegram import InlineKeyboardMarkup, InputMediaPhoto, Message
from telegram.error import BadRequest, TelegramError

from bot import keyboards
from bot.job_texts import bar, duration, failure_text, painter_note, reason_code
from bot.store import JobMessages
from bot.texts import t
from bot.tg import Blocked, call
from engine.observability.logs import log_event
from engine.presets import PRINT
from engine.queue import JobEvent, JobRecord, QueueUnavailable

if TYPE_CHECKING:
    from bot.follow import Follower

log = logging.getLogger(__name__)
BG: dict[str, Any] = {"rate_limit_args": True}  # background: user replies go first (bot.pacing)
_END = None  # end-of-stream marker in a delivery's inbox

Inbox = asyncio.Queue[JobEvent | QueueUnavailable | None]


class Stopping(Exception):
    """The bot is stopping: this delivery must not start its upload (the next start will)."""


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
                due = self._wait_s()  # wake up at least as often as the watcher looks
                every = self.f.health_every_s
                timeout = every if due is None else min(due, every)
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
                await call(
                    lambda: bot.send_document(
                        chat, image, filename=name, caption=caption, reply_markup=markup, **BG
                    )
                )
            else:
                await call(
                    lambda: bot.send_photo(chat, image, caption=caption, reply_markup=markup, **BG)
                )
            # Telegram has it: mark it before any other await, so that only a kill -9 in the
            # upload itself can resend it.
            self.messages.sent = True
            await self._save()
        finally:
            self.f.end_upload(self.job_id)
        if meta.get("as_file") and not printed:  # a courtesy copy, never resent
            await call(lambda: bot.send_document(chat, image, filename=name, **BG))
        log_event(log, "job.delivered", job=self.job_id, user_id=self.job.request.user_id)
        await self._cleanup(delete_status=True)
        await self._finish()

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
