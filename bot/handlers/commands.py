"""Slash commands, and the texts that are not pictures."""

from __future__ import annotations

import asyncio
import logging

from telegram import Update
from telegram.constants import ChatAction

from bot import keyboards
from bot.context import BotContext
from bot.conversation import State
from bot.handlers.jobs import say
from bot.job_texts import duration
from bot.texts import t
from engine.observability.logs import log_event

log = logging.getLogger(__name__)


async def start(update: Update, context: BotContext) -> None:
    await say(context, t(context.lang, "start"))


async def help_command(update: Update, context: BotContext) -> None:
    await say(context, t(context.lang, "help"))


async def styles(update: Update, context: BotContext) -> None:
    from engine.contact_sheet import contact_sheet

    paintings = context.services.paintings
    await context.bot.send_chat_action(context.chat_id, ChatAction.UPLOAD_PHOTO)
    sheet = await asyncio.to_thread(contact_sheet, paintings)
    caption = t(context.lang, "styles_caption", count=len(paintings))
    await context.bot.send_photo(context.chat_id, sheet, caption=caption)


async def lang_command(update: Update, context: BotContext) -> None:
    await say(context, t(context.lang, "lang_choose"), reply_markup=keyboards.languages())


async def settings_command(update: Update, context: BotContext) -> None:
    markup = keyboards.settings(context.lang, context.prefs, context.services.settings.qualities)
    await say(context, t(context.lang, "settings_title"), reply_markup=markup)


async def stats(update: Update, context: BotContext) -> None:
    """Queue figures for admins; everyone else gets /help."""
    svc = context.services
    if context.user_id not in svc.settings.admins:
        await help_command(update, context)
        return
    s = await svc.queue.stats()
    text = t(
        context.lang,
        "stats",
        queued=s.queued,
        running=s.running,
        workers=s.workers_alive,
        done=s.done_today,
        failed=s.failed_today,
        wait=duration(s.mean_wait_s),
        run=duration(s.mean_run_s),
    )
    await say(context, text)


async def forget(update: Update, context: BotContext) -> State:
    """Delete the user's jobs, pictures and settings; the conversation starts over."""
    svc, lang = context.services, context.lang
    await svc.queue.forget(context.user_id)
    await svc.store.forget(context.user_id)
    log_event(log, "user.forget", user_id=context.user_id)
    await say(context, t(lang, "forgotten"))
    return State.WAITING_PHOTO


async def unknown_command(update: Update, context: BotContext) -> None:
    await say(context, t(context.lang, "unknown_command"))


async def text_instead_of_photo(update: Update, context: BotContext) -> None:
    await say(context, t(context.lang, "text_instead"))
