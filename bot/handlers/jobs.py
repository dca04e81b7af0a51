"""Submitting a painting job: what the picture and button handlers share.

Every job is keyed by the update that asked for it (`job_key`), so an update replayed after a
restart (bot.updates) finds the job it made instead of queueing a second one."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from telegram import Update
from telegram.error import TelegramError

from bot.context import BotContext
from bot.store import OWN_STYLE
from bot.texts import t
from bot.tg import error_kind
from engine import schedule
from engine.observability.logs import log_event
from engine.presets import DEFAULT_QUALITY, PRINT
from engine.queue import (
    JobOptions,
    JobRequest,
    QueueFull,
    QueueUnavailable,
    StyleChoice,
    TooManyActiveJobs,
)
from engine.queue.policy import DEFAULT_RUN_S

log = logging.getLogger(__name__)


async def say(context: BotContext, text: str, **kwargs: object) -> None:
    """Send `text` to the chat this update (or timer) belongs to."""
    await context.bot.send_message(context.chat_id, text, **kwargs)  # type: ignore[arg-type]


async def read_painting(path: Path | None) -> bytes | None:
    """A gallery file's bytes, read off the event loop; None if it cannot be read."""
    if path is None:
        return None
    try:
        return await asyncio.to_thread(path.read_bytes)
    except OSError:
        return None


def job_key(update: Update) -> str:
    """The key of the job `update` asks for: a button's callback query id (unique per press),
    else the chat and the update id."""
    if update.callback_query is not None:
        return f"cq:{update.callback_query.id}"
    chat = update.effective_chat.id if update.effective_chat is not None else 0
    return f"u:{chat}:{update.update_id}"


async def paint_stored_photo(context: BotContext, style: str, key: str) -> None:
    """Queue the user's saved photo in `style`, or say that the photo is gone."""
    photo = await context.services.store.image(context.user_id, "photo")
    if photo is None:
        await say(context, t(context.lang, "no_photo"))
        return
    await submit(context, context.lang, photo, style, key)


async def submit(context: BotContext, lang: str, photo: bytes, style: str, key: str) -> None:
    """Queue `photo` in `style` (a gallery slug, or OWN_STYLE for the user's saved style
    picture) with the user's settings, as the job `key` (job_key); the follower takes it from
    there, from the moment the queue has it. Returns once the job exists (or the user was told
    why not): a button answered after this never loses a press."""
    svc, user_id, chat_id = context.services, context.user_id, context.chat_id
    prefs = await svc.store.user(user_id)  # as they are now: a repaint button just changed them
    meta: dict[str, object] = {"lang": lang, "slug": style, "as_file": prefs.as_file}
    if style == OWN_STYLE:
        image = await svc.store.image(user_id, "style")
        if image is None:
            await say(context, t(lang, "no_photo"))
            return
        choice = StyleChoice(image=image)
    else:
        painting = svc.painting(style)
        if painting is None:
            await say(context, t(lang, "gone"))
            return
        # the painting's bytes travel with the job, so a worker needs no gallery of its own
        # (the queue stores them once, by sha256); slug, title and artist are for the caption
        image = await read_painting(painting.path)
        if image is None:  # the file went away since the gallery was listed
            log_event(log, "job.painting_unreadable", level=logging.WARNING, style=style)
            await say(context, t(lang, "gone"))
            return
        choice = StyleChoice(slug=style, image=image)
        meta.update(title=painting.title, artist=painting.artist)
    # a quality the operator no longer offers (prints switched off) falls back to the default
    quality = prefs.quality if prefs.quality in svc.settings.qualities else DEFAULT_QUALITY
    options = JobOptions(
        size=svc.settings.size_for(quality),
        strength=prefs.strength,
        preserve_colors=prefs.keep_colors,
        quality=quality,
    )
    request = JobRequest(user_id, chat_id, photo, [choice], options, meta)
    try:
        job_id, _ = await svc.queue.submit(request, key=key)
    except TooManyActiveJobs as exc:
        await say(context, t(lang, "too_many_jobs", limit=exc.limit))
        return
    except QueueFull:
        await say(context, t(lang, "queue_full"))
        return
    except QueueUnavailable:
        await say(context, t(lang, "queue_unavailable"))
        return
    # Followed before anything else can fail: a job found by its key is followed already, or
    # delivered (a no-op then).
    svc.follower.follow(job_id)
    style = await job_style(context, job_id, style)
    await svc.store.update(user_id, last_style=style)
    log_event(log, "job.submitted", job=job_id, user_id=user_id, style=style, size=options.size)
    if quality == PRINT:
        minutes = await print_minutes(context, options.size)
        try:  # the job is followed: this message failing loses nothing
            await say(context, t(lang, "print_queued", size=options.size, minutes=minutes))
        except TelegramError as exc:
            log_event(
                log, "job.eta_not_sent", level=logging.WARNING, job=job_id, error=error_kind(exc)
            )


async def job_style(context: BotContext, job_id: str, style: str) -> str:
    """The style of the job `submit` got: `style`, unless the key found an earlier job (a
    replayed press, whose 🎲 may have drawn another painting): the user's saved style is the
    one they will see painted, which Stronger/Gentler repaint in."""
    try:
        job = await context.services.queue.get(job_id)
    except QueueUnavailable:
        return style
    return str(job.request.meta.get("slug") or style) if job is not None else style


async def print_minutes(context: BotContext, size: int) -> int:
    """A print's run time, told before it starts: the queue's mean run time (of the jobs it
    has painted lately, mostly at the default quality) scaled by the print's share of work."""
    svc = context.services
    try:
        mean = (await svc.queue.stats()).mean_run_s
    except QueueUnavailable:
        mean = None
    base = schedule.work(svc.settings.size_for(DEFAULT_QUALITY), DEFAULT_QUALITY)
    seconds = (mean or DEFAULT_RUN_S) * schedule.work(size, PRINT) / base
    return max(1, round(seconds / 60))
