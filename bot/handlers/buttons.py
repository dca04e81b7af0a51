"""Inline buttons. Every button that queues a job answers its callback only after the job exists
(issue 11): Telegram shows the press as answered, so an answered press is never lost. The job is
keyed by the press (bot.handlers.jobs.job_key), so a press replayed after a restart finds the
job it made instead of painting again; its second answer, which Telegram refuses, is let go."""

from __future__ import annotations

import logging
import random

from telegram import CallbackQuery, Update
from telegram.error import BadRequest

from bot import keyboards
from bot.context import BotContext
from bot.conversation import State
from bot.handlers.jobs import job_key, paint_stored_photo, say
from bot.store import STRENGTHS
from bot.texts import LANGUAGES, t

log = logging.getLogger(__name__)


async def answer(query: CallbackQuery, text: str | None = None, show_alert: bool = False) -> None:
    """Answer the press; a press answered before (replayed after a restart) or too old for
    Telegram is let go: the user saw it answered then, or the rest of the handler answers now."""
    try:
        await query.answer(text, show_alert=show_alert)
    except BadRequest as exc:
        if "query is too old" not in str(exc).lower():
            raise
        log.info("callback query %s was answered before or is too old", query.id)


def _query(update: Update) -> tuple[CallbackQuery, str]:
    """The pressed button's query and its callback data (every button here has data)."""
    query = update.callback_query
    if query is None or query.data is None:
        raise RuntimeError("a button handler got an update without callback data")
    return query, query.data


async def page(update: Update, context: BotContext) -> None:
    query, data = _query(update)
    await answer(query)
    markup = keyboards.styles(context.lang, context.services.paintings, int(data.split(":")[1]))
    await query.edit_message_text(t(context.lang, "pick_style"), reply_markup=markup)


async def choose_style(update: Update, context: BotContext) -> State:
    """A painting from the menu: paint the saved photo in it."""
    query, data = _query(update)
    kind, value = data.split(":", 1)
    paintings = context.services.paintings
    painting = next((p for p in paintings if keyboards.slug_matches(kind, value, p.slug)), None)
    if painting is None:
        await answer(query, t(context.lang, "gone"), show_alert=True)
        return State.CHOOSING_STYLE
    await paint_stored_photo(context, painting.slug, job_key(update))
    await answer(query, painting.title)
    return State.CHOOSING_STYLE


async def surprise(update: Update, context: BotContext) -> State:
    """🎲: a random painting, not the one used last. A replay of the press (bot.updates) must
    paint what the first run drew, but the first run saved its draw as the last style, which a
    second draw would exclude; so the draw is kept with the update (Store.decide) before the
    job is queued, and seeded by the press, so a first run killed before it kept anything drew
    what the replay draws."""
    query, _ = _query(update)
    svc = context.services
    last = context.prefs.last_style
    choices = [p for p in svc.paintings if p.slug != last] or svc.paintings
    if not choices:
        await answer(query, t(context.lang, "gone"), show_alert=True)
        return State.CHOOSING_STYLE
    drawn = random.Random(query.id).choice(choices).slug
    slug = await svc.store.decide(update.update_id, drawn)
    painting = next((p for p in svc.paintings if p.slug == slug), None)
    if painting is None:  # gone from the gallery since the first run
        await answer(query, t(context.lang, "gone"), show_alert=True)
        return State.CHOOSING_STYLE
    await paint_stored_photo(context, painting.slug, job_key(update))
    await answer(query, f"🎲 {painting.title}")
    return State.CHOOSING_STYLE


async def own_style(update: Update, context: BotContext) -> State:
    """🖼: the next picture is the style."""
    query, _ = _query(update)
    await answer(query)
    await say(context, t(context.lang, "send_style_now"))
    return State.WAITING_STYLE_PICTURE


async def show_settings(update: Update, context: BotContext) -> None:
    query, _ = _query(update)
    await answer(query)
    markup = keyboards.settings(context.lang, context.prefs, context.services.settings.qualities)
    await query.edit_message_text(t(context.lang, "settings_title"), reply_markup=markup)


async def change_setting(update: Update, context: BotContext) -> None:
    query, data = _query(update)
    store, user_id, prefs = context.services.store, context.user_id, context.prefs
    _, what, *rest = data.split(":")
    # a name the presets do not know (a stale or forged button) changes nothing: stored, it
    # would make every later job of the user fail (engine.presets.UnknownPreset); nor does a
    # print button once the operator has switched prints off
    qualities = context.services.settings.qualities
    if what == "q" and rest and rest[0] in qualities:
        prefs = await store.update(user_id, once=query.id, quality=rest[0])
    elif what == "s" and rest and rest[0] in STRENGTHS:
        prefs = await store.update(user_id, once=query.id, strength=rest[0])
    elif what == "c":
        prefs = await store.update(user_id, once=query.id, keep_colors=not prefs.keep_colors)
    elif what == "f":
        prefs = await store.update(user_id, once=query.id, as_file=not prefs.as_file)
    await answer(query)
    await query.edit_message_reply_markup(keyboards.settings(context.lang, prefs, qualities))


async def set_language(update: Update, context: BotContext) -> None:
    query, data = _query(update)
    code = data.split(":")[1]
    if code not in LANGUAGES:
        code = LANGUAGES[0]
    await context.services.store.update(context.user_id, once=query.id, lang=code)
    await answer(query)
    await query.edit_message_text(t(code, "lang_set"))


async def cancel_job(update: Update, context: BotContext) -> None:
    query, data = _query(update)
    svc, job_id = context.services, data.split(":", 1)[1]
    job = await svc.queue.get(job_id)
    if job is None or job.request.user_id != context.user_id:
        await answer(query, t(context.lang, "not_yours" if job else "gone"))
        return
    await svc.queue.cancel(job_id)
    await answer(query, t(context.lang, "cancelling"))
    svc.follower.follow(job_id)  # a no-op unless the job lost its follower (e.g. restart race)


async def another_style(update: Update, context: BotContext) -> None:
    query, _ = _query(update)
    svc = context.services
    await answer(query)
    if await svc.store.image(context.user_id, "photo") is None:
        await say(context, t(context.lang, "no_photo"))
        return
    markup = keyboards.styles(context.lang, svc.paintings)
    await say(context, t(context.lang, "pick_style"), reply_markup=markup)


async def repaint(update: Update, context: BotContext) -> None:
    """Stronger / Gentler / Keep colors / Fast quality: change that setting, or none (Try again
    under a failure), and repaint the last photo in the last style."""
    query, data = _query(update)
    store, user_id = context.services.store, context.user_id
    prefs, change, once = context.prefs, data.split(":")[1], query.id
    if change in ("+", "-"):
        index = STRENGTHS.index(prefs.strength) + (1 if change == "+" else -1)
        strength = STRENGTHS[max(0, min(len(STRENGTHS) - 1, index))]
        await store.update(user_id, once=once, strength=strength)
    elif change == "c":
        await store.update(user_id, once=once, keep_colors=not prefs.keep_colors)
    elif change == "f":
        await store.update(user_id, once=once, quality="fast")
    if prefs.last_style is None:
        await say(context, t(context.lang, "no_photo"))
    else:
        await paint_stored_photo(context, prefs.last_style, job_key(update))
    await answer(query)


async def expired_button(update: Update, context: BotContext) -> None:
    """Any other button (from an old version of the bot, say)."""
    if update.callback_query is not None:
        await answer(update.callback_query, t(context.lang, "gone"), show_alert=True)
