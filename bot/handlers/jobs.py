"""Submitting a painting job: what the picture and button handlers share."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from bot.context import BotContext
from bot.store import OWN_STYLE
from bot.texts import t
from engine.observability.logs import log_event
from engine.queue import (
    JobOptions,
    JobRequest,
    QueueFull,
    QueueUnavailable,
    StyleChoice,
    TooManyActiveJobs,
)

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


async def paint_stored_photo(context: BotContext, style: str) -> None:
    """Queue the user's saved photo in `style`, or say that the photo is gone."""
    photo = context.services.store.image(context.user_id, "photo")
    if photo is None:
        await say(context, t(context.lang, "no_photo"))
        return
    await submit(context, context.lang, photo, style)


async def submit(context: BotContext, lang: str, photo: bytes, style: str) -> None:
    """Queue `photo` in `style` (a gallery slug, or OWN_STYLE for the user's saved style
    picture) with the user's settings; the follower takes it from there. Returns once the job
    exists (or the user was told why not): a button answered after this never loses a press."""
    svc, user_id, chat_id = context.services, context.user_id, context.chat_id
    prefs = svc.store.user(user_id)
    meta: dict[str, object] = {"lang": lang, "slug": style, "as_file": prefs.as_file}
    if style == OWN_STYLE:
        image = svc.store.image(user_id, "style")
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
    options = JobOptions(
        size=svc.settings.size_for(prefs.quality),
        strength=prefs.strength,
        preserve_colors=prefs.keep_colors,
        quality=prefs.quality,
    )
    request = JobRequest(user_id, chat_id, photo, [choice], options, meta)
    try:
        job_id, _ = await svc.queue.submit(request)
    except TooManyActiveJobs as exc:
        await say(context, t(lang, "too_many_jobs", limit=exc.limit))
        return
    except QueueFull:
        await say(context, t(lang, "queue_full"))
        return
    except QueueUnavailable:
        await say(context, t(lang, "queue_unavailable"))
        return
    svc.store.update(user_id, last_style=style)
    log_event(log, "job.submitted", job=job_id, user_id=user_id, style=style, size=options.size)
    svc.follower.follow(job_id)
