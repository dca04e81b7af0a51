"""Photos and image files: the content, the style picture the user was asked for, or an album of
two (photo + style) collected by a job-queue timer while its files come down together."""

from __future__ import annotations

import asyncio
import logging
from typing import cast

from telegram import Message, Update
from telegram.ext import JobQueue, filters

from bot import keyboards
from bot.context import BotContext
from bot.conversation import State
from bot.handlers.jobs import job_key, say, submit
from bot.media import download_image, refusal
from bot.services import Album
from bot.store import OWN_STYLE
from bot.texts import t
from engine.errors import ImageError

log = logging.getLogger(__name__)
ALBUM_SETTLE_S = 0.8  # Telegram delivers an album as separate messages within a moment


class _InAlbum(filters.MessageFilter):
    def filter(self, message: Message) -> bool:
        return message.media_group_id is not None


PICTURE = filters.PHOTO | filters.Document.ALL
SINGLE_PICTURE = PICTURE & ~_InAlbum()
ALBUM_PICTURE = PICTURE & _InAlbum()


async def _download(update: Update, context: BotContext) -> bytes | None:
    """The image of this message, or None after telling the user what is wrong with it."""
    message = update.effective_message
    if message is None:
        return None
    try:
        return await download_image(message)
    except ImageError as exc:
        await message.reply_text(refusal(context.lang, exc))
        return None


async def photo(update: Update, context: BotContext) -> State | None:
    """A photo to repaint: keep it and offer the paintings."""
    data = await _download(update, context)
    if data is None:
        return None  # the state stays as it was
    await context.services.store.save_image(context.user_id, "photo", data)
    markup = keyboards.styles(context.lang, context.services.paintings)
    await say(context, t(context.lang, "pick_style"), reply_markup=markup)
    return State.CHOOSING_STYLE


async def style_picture(update: Update, context: BotContext) -> State | None:
    """The picture whose style the user asked to use (after "🖼 My own style")."""
    data = await _download(update, context)
    if data is None:
        return None
    store = context.services.store
    photo = await store.image(context.user_id, "photo")
    if photo is None:
        await say(context, t(context.lang, "no_photo"))
        return State.WAITING_PHOTO
    await store.save_image(context.user_id, "style", data)
    await submit(context, context.lang, photo, OWN_STYLE, job_key(update))
    return State.CHOOSING_STYLE


async def album_part(update: Update, context: BotContext) -> None:
    """One part of an album: start fetching its file, hold the update, and (re)start the timer
    that ends the album. The file is fetched beside the user's line, not in it: the user's
    updates run one after another (bot.updates), and a part that downloaded inside its handler
    held the next part back for the whole download, so with 1.5 s a file the timer fired
    between the parts and split the album (issue 30). Now every part reaches here within a
    moment of its arrival, the files come down at once, and the timer waits for them. The part
    stays unhandled until the album is done, so a crash in between replays the whole album."""
    message = update.effective_message
    if message is None or message.media_group_id is None:
        return
    group = message.media_group_id
    album = context.services.albums.setdefault(
        group, Album(context.chat_id, context.user_id, context.lang)
    )
    download = context.application.create_task(_fetch(message), name=f"album:{group}:part")
    album.parts[message.message_id] = (message, download)
    album.updates.append(update.update_id)
    context.services.updates.hold(update.update_id)
    name = f"album:{group}"
    jobs = cast("JobQueue[BotContext] | None", context.job_queue)  # PTB leaves its type open
    if jobs is None:
        raise RuntimeError("python-telegram-bot[job-queue] is not installed")
    for job in jobs.get_jobs_by_name(name):
        job.schedule_removal()
    jobs.run_once(
        _album_done,
        ALBUM_SETTLE_S,
        data=group,
        name=name,
        chat_id=album.chat_id,
        user_id=album.user_id,
    )


async def _fetch(message: Message) -> bytes | Exception:
    """A part's image, or what went wrong fetching it: told once the album is done."""
    try:
        return await download_image(message)
    except Exception as exc:  # handed to _album_done, which reports it
        return exc


async def _album_done(context: BotContext) -> None:
    """The album stopped growing: once its files are in, two images are photo then style, one
    is an ordinary photo, more are explained; a part that could not be used is refused."""
    svc = context.services
    group = str(context.job.data) if context.job is not None else ""
    album = svc.albums.get(group)
    if album is None:
        return
    if svc.updates.arriving(group):
        return  # a part still waits in its user's line: its handler restarts the timer
    parts = [album.parts[k] for k in sorted(album.parts)]
    fetched = await asyncio.gather(*(download for _, download in parts))
    if len(album.parts) != len(parts) or svc.updates.arriving(group):
        return  # a part came in meanwhile: the timer it started ends the album
    del svc.albums[group]
    lang = album.lang
    try:
        for (message, _), image in zip(parts, fetched, strict=True):
            if isinstance(image, ImageError):
                await message.reply_text(refusal(lang, image))
            elif isinstance(image, Exception):
                log.error("album part failed: %s", type(image).__name__, exc_info=image)
        images = [image for image in fetched if isinstance(image, bytes)]
        if len(images) == 1:
            await svc.store.save_image(album.user_id, "photo", images[0])
            markup = keyboards.styles(lang, svc.paintings)
            await say(context, t(lang, "pick_style"), reply_markup=markup)
        elif len(images) == 2:
            await svc.store.save_image(album.user_id, "photo", images[0])
            await svc.store.save_image(album.user_id, "style", images[1])
            key = f"album:{album.chat_id}:{group}"  # a replayed album finds its job
            await submit(context, lang, images[0], OWN_STYLE, key)
        elif images:
            await say(context, t(lang, "album_two"))
    finally:
        await svc.updates.release(album.updates)
