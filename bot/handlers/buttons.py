"""Inline buttons. Every button that queues a job answers its callback only after the job exists
(issue 11): Telegram shows the press as answered, so an answered press is never lost."""

from __future__ import annotations

import random

from telegram import CallbackQuery, Update

from bot import keyboards
from bot.context import BotContext
from bot.conversation import State
from bot.handlers.jobs import paint_stored_photo, say
from bot.store import QUALITIES, STRENGTHS
from bot.texts import LANGUAGES, t


def _query(update: Update) -> tuple[CallbackQuery, str]:
    """The pressed button's query and its callback data (every button here has data)."""
    query = update.callback_query
    if query is None or query.data is None:
        raise RuntimeError("a button handler got an update without callback data")
    return query, query.data


async def page(update: Update, context: BotContext) -> None:
    query, data = _query(update)
    await query.answer()
    markup = keyboards.styles(context.lang, context.services.paintings, int(data.split(":")[1]))
    await query.edit_message_text(t(context.lang, "pick_style"), reply_markup=markup)


async def choose_style(update: Update, context: BotContext) -> State:
    """A painting from the menu: paint the saved photo in it."""
    query, data = _query(update)
    kind, value = data.split(":", 1)
    paintings = context.services.paintings
    painting = next((p for p in paintings if keyboards.slug_matches(kind, value, p.slug)), None)
    if painting is None:
        await query.answer(t(context.lang, "gone"), show_alert=True)
        return State.CHOOSING_STYLE
    await paint_stored_photo(context, painting.slug)
    await query.answer(painting.title)
    return State.CHOOSING_STYLE


async def surprise(update: Update, context: BotContext) -> State:
    """🎲: a random painting, not the one used last."""
    query, _ = _query(update)
    svc = context.services
    last = svc.store.user(context.user_id).last_style
    choices = [p for p in svc.paintings if p.slug != last] or svc.paintings
    if not choices:
        await query.answer(t(context.lang, "gone"), show_alert=True)
        return State.CHOOSING_STYLE
    painting = random.choice(choices)
    await paint_stored_photo(context, painting.slug)
    await query.answer(f"🎲 {painting.title}")
    return State.CHOOSING_STYLE


async def own_style(update: Update, context: BotContext) -> State:
    """🖼: the next picture is the style."""
    query, _ = _query(update)
    await query.answer()
    await say(context, t(context.lang, "send_style_now"))
    return State.WAITING_STYLE_PICTURE


async def show_settings(update: Update, context: BotContext) -> None:
    query, _ = _query(update)
    await query.answer()
    prefs = context.services.store.user(context.user_id)
    markup = keyboards.settings(context.lang, prefs)
    await query.edit_message_text(t(context.lang, "settings_title"), reply_markup=markup)


async def change_setting(update: Update, context: BotContext) -> None:
    query, data = _query(update)
    store, user_id = context.services.store, context.user_id
    prefs = store.user(user_id)
    _, what, *rest = data.split(":")
    # a name the presets do not know (a stale or forged button) changes nothing: stored, it
    # would make every later job of the user fail (engine.presets.UnknownPreset)
    if what == "q" and rest and rest[0] in QUALITIES:
        prefs = store.update(user_id, quality=rest[0])
    elif what == "s" and rest and rest[0] in STRENGTHS:
        prefs = store.update(user_id, strength=rest[0])
    elif what == "c":
        prefs = store.update(user_id, keep_colors=not prefs.keep_colors)
    elif what == "f":
        prefs = store.update(user_id, as_file=not prefs.as_file)
    await query.answer()
    await query.edit_message_reply_markup(keyboards.settings(context.lang, prefs))


async def set_language(update: Update, context: BotContext) -> None:
    query, data = _query(update)
    code = data.split(":")[1]
    if code not in LANGUAGES:
        code = LANGUAGES[0]
    context.services.store.update(context.user_id, lang=code)
    await query.answer()
    await query.edit_message_text(t(code, "lang_set"))


async def cancel_job(update: Update, context: BotContext) -> None:
    query, data = _query(update)
    svc, job_id = context.services, data.split(":", 1)[1]
    job = await svc.queue.get(job_id)
    if job is None or job.request.user_id != context.user_id:
        await query.answer(t(context.lang, "not_yours" if job else "gone"))
        return
    await svc.queue.cancel(job_id)
    await query.answer(t(context.lang, "cancelling"))
    svc.follower.follow(job_id)  # a no-op unless the job lost its follower (e.g. restart race)


async def another_style(update: Update, context: BotContext) -> None:
    query, _ = _query(update)
    svc = context.services
    await query.answer()
    if svc.store.image(context.user_id, "photo") is None:
        await say(context, t(context.lang, "no_photo"))
        return
    markup = keyboards.styles(context.lang, svc.paintings)
    await say(context, t(context.lang, "pick_style"), reply_markup=markup)


async def repaint(update: Update, context: BotContext) -> None:
    """Stronger / Gentler / Keep colors / Fast quality: change that setting, or none (Try again
    under a failure), and repaint the last photo in the last style."""
    query, data = _query(update)
    store, user_id = context.services.store, context.user_id
    prefs, change = store.user(user_id), data.split(":")[1]
    if change in ("+", "-"):
        index = STRENGTHS.index(prefs.strength) + (1 if change == "+" else -1)
        store.update(user_id, strength=STRENGTHS[max(0, min(len(STRENGTHS) - 1, index))])
    elif change == "c":
        store.update(user_id, keep_colors=not prefs.keep_colors)
    elif change == "f":
        store.update(user_id, quality="fast")
    if prefs.last_style is None:
        await say(context, t(context.lang, "no_photo"))
    else:
        await paint_stored_photo(context, prefs.last_style)
    await query.answer()


async def expired_button(update: Update, context: BotContext) -> None:
    """Any other button (from an old version of the bot, say)."""
    if update.callback_query is not None:
        await update.callback_query.answer(t(context.lang, "gone"), show_alert=True)
