"""The error handler: what a handler failure leaves behind."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.error import Forbidden

from bot.context import BotContext
from bot.updates import store_fault
from engine.observability.logs import log_event

log = logging.getLogger(__name__)


async def on_error(update: object, context: BotContext) -> None:
    """Log any handler failure (the log filter scrubs the token) and keep serving; a user who
    blocked the bot loses their jobs; an update whose handler failed on the store (disk full,
    I/O error, locked) is run again once it works (UpdateProcessor.failed_on_store), not lost.
    Telegram errors were already counted by kind in TELEGRAM_ERRORS as they happened
    (bot.pacing)."""
    error = context.error
    if error is not None and store_fault(error) and isinstance(update, Update):
        context.services.updates.failed_on_store(update.update_id, error)
        log.warning("update %d failed on the store (%s): it runs again", update.update_id, error)
        return
    if isinstance(error, Forbidden) and isinstance(update, Update) and update.effective_user:
        user_id = update.effective_user.id
        await context.services.queue.forget(user_id)
        log_event(log, "user.blocked", user_id=user_id)
        return
    log.error("handler failed: %s", type(error).__name__, exc_info=error)
