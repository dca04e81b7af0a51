"""One short async handler per thing a user does. Registration is in `bot.app`."""

from __future__ import annotations

import asyncio
import logging
import random

from telegram import Update
from telegram.constants import ChatAction
from telegram.ext import ContextTypes

from bot import keyboards
from bot.follow import duration
from bot.media import download_image
from bot.services import Album, Services, lang_of, services
from bot.store import STRENGTHS
from bot.texts import LANGUAGES, t
from bot.tg import error_kind
from engine.errors import ImageError
from engine.observability.logs import log_event
from engine.observability.metrics import TELEGRAM_ERRORS
from engine.queue import (
    JobOptions,
    JobRequest,
    QueueFull,
    QueueUnavailable,
    StyleChoice,
    TooManyActiveJobs,
)

log = logging.getLogger(__name__)
ALBUM_SETTLE_S = 0.8  # Telegram delivers an album as separate messages within a moment


async def reply(update: Update, text: str, **kwargs: object) -> None:
    """Answer in the chat the update came from."""
    chat = update.effective_chat
    assert chat is not None
    await chat.send_message(text, **kwargs)  # type: ignore[arg-type]


# -- commands ------------------------------------------------------------------------------


async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await reply(update, t(lang_of(update, context), "start"))


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await reply(update, t(lang_of(update, context), "help"))


async def styles(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    from engine.gallery import contact_sheet

    svc, lang = services(context), lang_of(update, context)
    message = update.effective_message
    assert message is not None
    await message.reply_chat_action(ChatAction.UPLOAD_PHOTO)
    sheet = await asyncio.to_thread(contact_sheet, svc.paintings)
    caption = t(lang, "styles_caption", count=len(svc.paintings))
    await message.reply_photo(sheet, caption=caption)


async def lang_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await reply(
        update, t(lang_of(update, context), "lang_choose"), reply_markup=keyboards.languages()
    )


async def settings_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    user, lang = update.effective_user, lang_of(update, context)
    assert user is not None
    prefs = services(context).store.user(user.id)
    await reply(update, t(lang, "settings_title"), reply_markup=keyboards.settings(lang, prefs))


async def stats(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc, user, lang = services(context), update.effective_user, lang_of(update, context)
    if user is None or user.id not in svc.settings.admins:
        await help_command(update, context)
        return
    s = await svc.queue.stats()
    text = t(
        lang,
        "stats",
        queued=s.queued,
        running=s.running,
        workers=s.workers_alive,
        done=s.done_today,
        failed=s.failed_today,
        wait=duration(s.mean_wait_s),
        run=duration(s.mean_run_s),
    )
    await reply(update, text)


async def forget(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc, user, lang = services(context), update.effective_user, lang_of(update, context)
    assert user is not None
    await svc.queue.forget(user.id)
    svc.store.forget(user.id)
    log_event(log, "user.forget", user_id=user.id)
    await reply(update, t(lang, "forgotten"))


async def unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await reply(update, t(lang_of(update, context), "unknown_command"))


async def text_instead_of_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await reply(update, t(lang_of(update, context), "text_instead"))


# -- pictures ------------------------------------------------------------------------------


async def picture(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo or an image file: the content (or, when asked for, the style)."""
    svc, lang = services(context), lang_of(update, context)
    message, user = update.effective_message, update.effective_user
    assert message is not None and user is not None
    try:
        data = await download_image(message)
    except ImageError as exc:
        await message.reply_text(t(lang, exc.code))
        return
    if message.media_group_id:
        _collect_album(
            svc,
            message.media_group_id,
            message.chat_id,
            user.id,
            lang,
            message.message_id,
            data,
            context,
        )
        return
    prefs = svc.store.user(user.id)
    if prefs.awaiting_style:
        photo = svc.store.image(user.id, "photo")
        svc.store.update(user.id, awaiting_style=False)
        if photo is None:
            await message.reply_text(t(lang, "no_photo"))
            return
        svc.store.save_image(user.id, "style", data)
        await submit(svc, user.id, message.chat_id, lang, photo, "own", context)
        return
    svc.store.save_image(user.id, "photo", data)
    await message.reply_text(
        t(lang, "pick_style"), reply_markup=keyboards.styles(lang, svc.paintings)
    )


def _collect_album(
    svc: Services,
    group: str,
    chat_id: int,
    user_id: int,
    lang: str,
    message_id: int,
    data: bytes,
    context: ContextTypes.DEFAULT_TYPE,
) -> None:
    album = svc.albums.setdefault(group, Album(chat_id, user_id, lang))
    album.images[message_id] = data
    if album.timer is not None:
        album.timer.cancel()
    loop = asyncio.get_running_loop()
    album.timer = loop.call_later(
        ALBUM_SETTLE_S,
        lambda: context.application.create_task(_album_done(svc, group, context)),
    )


async def _album_done(svc: Services, group: str, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Two images: photo then style. One: an ordinary photo. More: explain."""
    album = svc.albums.pop(group, None)
    if album is None:
        return
    images = [album.images[k] for k in sorted(album.images)]
    bot, lang = context.bot, album.lang
    if len(images) == 1:
        svc.store.save_image(album.user_id, "photo", images[0])
        markup = keyboards.styles(lang, svc.paintings)
        await bot.send_message(album.chat_id, t(lang, "pick_style"), reply_markup=markup)
    elif len(images) == 2:
        svc.store.save_image(album.user_id, "photo", images[0])
        svc.store.save_image(album.user_id, "style", images[1])
        await submit(svc, album.user_id, album.chat_id, lang, images[0], "own", context)
    else:
        await bot.send_message(album.chat_id, t(lang, "album_two"))


# -- buttons -------------------------------------------------------------------------------


async def page(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query, lang = update.callback_query, lang_of(update, context)
    assert query is not None and query.data is not None
    await query.answer()
    number = int(query.data.split(":")[1])
    await query.edit_message_text(
        t(lang, "pick_style"),
        reply_markup=keyboards.styles(lang, services(context).paintings, number),
    )


async def choose_style(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc, query, lang = services(context), update.callback_query, lang_of(update, context)
    assert query is not None and query.data is not None
    kind, value = query.data.split(":", 1)
    painting = next((p for p in svc.paintings if keyboards.slug_matches(kind, value, p.slug)), None)
    if painting is None:
        await query.answer(t(lang, "gone"), show_alert=True)
        return
    await query.answer(painting.title)
    await _paint_stored_photo(update, context, painting.slug)


async def surprise(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc, query = services(context), update.callback_query
    assert query is not None and update.effective_user is not None
    last = svc.store.user(update.effective_user.id).last_style
    choices = [p for p in svc.paintings if p.slug != last] or svc.paintings
    if not choices:
        await query.answer(t(lang_of(update, context), "gone"), show_alert=True)
        return
    painting = random.choice(choices)
    await query.answer(f"🎲 {painting.title}")
    await _paint_stored_photo(update, context, painting.slug)


async def own_style(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query, user, lang = update.callback_query, update.effective_user, lang_of(update, context)
    assert query is not None and user is not None
    services(context).store.update(user.id, awaiting_style=True)
    await query.answer()
    await reply(update, t(lang, "send_style_now"))


async def show_settings(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query, user, lang = update.callback_query, update.effective_user, lang_of(update, context)
    assert query is not None and user is not None
    await query.answer()
    prefs = services(context).store.user(user.id)
    await query.edit_message_text(
        t(lang, "settings_title"), reply_markup=keyboards.settings(lang, prefs)
    )


async def change_setting(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc, query, user = services(context), update.callback_query, update.effective_user
    assert query is not None and query.data is not None and user is not None
    lang, prefs = lang_of(update, context), svc.store.user(user.id)
    _, what, *rest = query.data.split(":")
    if what == "q" and rest:
        prefs = svc.store.update(user.id, quality=rest[0])
    elif what == "s" and rest:
        prefs = svc.store.update(user.id, strength=rest[0])
    elif what == "c":
        prefs = svc.store.update(user.id, keep_colors=not prefs.keep_colors)
    elif what == "f":
        prefs = svc.store.update(user.id, as_file=not prefs.as_file)
    await query.answer()
    await query.edit_message_reply_markup(keyboards.settings(lang, prefs))


async def set_language(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query, user = update.callback_query, update.effective_user
    assert query is not None and query.data is not None and user is not None
    code = query.data.split(":")[1]
    if code not in LANGUAGES:
        code = "en"
    services(context).store.update(user.id, lang=code)
    await query.answer()
    await query.edit_message_text(t(code, "lang_set"))


async def cancel_job(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc, query, user = services(context), update.callback_query, update.effective_user
    assert query is not None and query.data is not None and user is not None
    lang, job_id = lang_of(update, context), query.data.split(":", 1)[1]
    job = await svc.queue.get(job_id)
    if job is None or job.request.user_id != user.id:
        await query.answer(t(lang, "not_yours" if job else "gone"))
        return
    await svc.queue.cancel(job_id)
    await query.answer(t(lang, "cancelling"))
    svc.follower.follow(job_id)  # a no-op unless the job lost its follower (e.g. restart race)


async def another_style(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    svc, query, user = services(context), update.callback_query, update.effective_user
    assert query is not None and user is not None
    lang = lang_of(update, context)
    await query.answer()
    if svc.store.image(user.id, "photo") is None:
        await reply(update, t(lang, "no_photo"))
        return
    await reply(update, t(lang, "pick_style"), reply_markup=keyboards.styles(lang, svc.paintings))


async def repaint(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Stronger / Gentler / Keep colors: change that setting, repaint the last photo + style."""
    svc, query, user = services(context), update.callback_query, update.effective_user
    assert query is not None and query.data is not None and user is not None
    prefs, change = svc.store.user(user.id), query.data.split(":")[1]
    if change in "+-":
        index = STRENGTHS.index(prefs.strength) + (1 if change == "+" else -1)
        svc.store.update(user.id, strength=STRENGTHS[max(0, min(len(STRENGTHS) - 1, index))])
    elif change == "c":
        svc.store.update(user.id, keep_colors=not prefs.keep_colors)
    await query.answer()
    if prefs.last_style is None:
        await reply(update, t(lang_of(update, context), "no_photo"))
        return
    await _paint_stored_photo(update, context, prefs.last_style)


async def expired_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    if update.callback_query is not None:
        await update.callback_query.answer(t(lang_of(update, context), "gone"), show_alert=True)


# -- submitting ----------------------------------------------------------------------------


async def _paint_stored_photo(
    update: Update, context: ContextTypes.DEFAULT_TYPE, style: str
) -> None:
    svc, user, chat = services(context), update.effective_user, update.effective_chat
    assert user is not None and chat is not None
    lang = lang_of(update, context)
    photo = svc.store.image(user.id, "photo")
    if photo is None:
        await context.bot.send_message(chat.id, t(lang, "no_photo"))
        return
    await submit(svc, user.id, chat.id, lang, photo, style, context)


async def submit(
    svc: Services,
    user_id: int,
    chat_id: int,
    lang: str,
    photo: bytes,
    style: str,
    context: ContextTypes.DEFAULT_TYPE,
) -> None:
    """Queue `photo` in `style` (a gallery slug, or "own" for the user's saved style picture)
    with the user's settings; the follower takes it from there."""
    prefs = svc.store.user(user_id)
    meta: dict[str, object] = {"lang": lang, "slug": style, "as_file": prefs.as_file}
    if style == "own":
        image = svc.store.image(user_id, "style")
        if image is None:
            await context.bot.send_message(chat_id, t(lang, "no_photo"))
            return
        choice = StyleChoice(image=image)
    else:
        painting = svc.painting(style)
        if painting is None:
            await context.bot.send_message(chat_id, t(lang, "gone"))
            return
        choice = StyleChoice(slug=style)
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
        await context.bot.send_message(chat_id, t(lang, "too_many_jobs", limit=exc.limit))
        return
    except QueueFull:
        await context.bot.send_message(chat_id, t(lang, "queue_full"))
        return
    except QueueUnavailable:
        await context.bot.send_message(chat_id, t(lang, "queue_unavailable"))
        return
    svc.store.update(user_id, last_style=style)
    log_event(log, "job.submitted", job=job_id, user_id=user_id, style=style, size=options.size)
    svc.follower.follow(job_id)


# -- errors --------------------------------------------------------------------------------


async def on_error(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Log any handler failure (the log filter scrubs the token) and keep serving; a user who
    blocked the bot loses their jobs."""
    from telegram.error import Forbidden, TelegramError

    error = context.error
    if isinstance(error, TelegramError):
        TELEGRAM_ERRORS.labels(kind=error_kind(error)).inc()
    if isinstance(error, Forbidden) and isinstance(update, Update) and update.effective_user:
        user_id = update.effective_user.id
        await services(context).queue.forget(user_id)
        log_event(log, "user.blocked", user_id=user_id)
        return
    log.error("handler failed: %s", type(error).__name__, exc_info=error)
