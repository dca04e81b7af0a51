"""The Telegram application: settings in, a ready `Application` out (`build_application`), plus
the start/stop plumbing shared by `orsay bot`, the tests and the load bench."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import warnings
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlparse

from telegram import BotCommand, Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    TypeHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot.config import Settings, require_token
from bot.context import BotContext
from bot.conversation import NAME, State, StorePersistence
from bot.follow import Follower, resume
from bot.handlers import buttons, commands, errors, pictures
from bot.pacing import ForegroundFirstLimiter
from bot.services import Services
from bot.store import Store
from bot.texts import LANGUAGES, t
from bot.updates import UpdateProcessor
from engine.queue import JobQueue, Painter, QueueUnavailable, open_queue
from engine.queue.painter_choice import make_painter

log = logging.getLogger(__name__)
COMMANDS = ("start", "help", "styles", "settings", "lang", "forget")
RESUME_RETRY_S = (1.0, 10.0)  # back-off (first, most) for resuming while the queue is down


def build_application(
    settings: Settings, *, queue: JobQueue | None = None, painter: Painter | None = None
) -> Application:
    """The bot, not started. Embedded queues paint in this process with `painter` (default:
    `make_painter(settings)`); with ORSAY_QUEUE=redis://… workers paint and `painter` is unused."""
    from engine.gallery import list_paintings

    if queue is None:
        if painter is None and not settings.redis_queue:
            painter = make_painter(settings)
        queue = open_queue(
            settings.queue_url,
            painter=painter,
            data_dir=settings.data_dir,
            limits=settings.queue_limits,
            retention_s=settings.retention_s,
            shutdown_grace_s=settings.shutdown_grace_s,
        )
    store = Store(settings.data_dir / "bot")
    updates = UpdateProcessor(store)  # each update on disk before Telegram forgets it; in order
    app = (
        ApplicationBuilder()
        .token(require_token(settings))
        .base_url(settings.base_url)
        .base_file_url(settings.base_file_url)
        .context_types(ContextTypes(context=BotContext))
        .persistence(StorePersistence(store))
        .rate_limiter(ForegroundFirstLimiter(settings.telegram_rate))
        .update_queue(updates.inbox)
        .concurrent_updates(updates)
        # httpcore scans its whole pool for every request: PTB's default of 256 connections
        # made that scan most of the bot's CPU under load; 32 is plenty for one bot.
        .connection_pool_size(32)
        .pool_timeout(30.0)
        # On stop PTB cancels the long poll and confirms what it fetched with one more
        # getUpdates; with the default pool of 1 that call found the cancelled poll still holding
        # the connection (PoolTimeout, seen in the chaos suite), so Telegram sent the stopped
        # bot's last batch again to the next one. The journal (bot.updates) drops such copies;
        # a second connection lets the confirmation through in the first place.
        .get_updates_connection_pool_size(2)
        .post_init(on_startup)
        .post_stop(on_stop)
        .post_shutdown(on_shutdown)
        .build()
    )
    app.bot_data["services"] = Services(
        settings=settings,
        queue=queue,
        store=store,
        updates=updates,
        follower=Follower(app.bot, queue, store, grace_s=settings.shutdown_grace_s),
        paintings=list_paintings(settings.gallery, present_only=True),
    )
    register(app)
    return app


def register(app: Application[Any, BotContext, Any, Any, Any, Any]) -> None:
    """One handler per user intent. The photo → style conversation (bot.conversation) comes
    first: it decides whether a picture is the content or the style."""
    photo = MessageHandler[BotContext, object](pictures.SINGLE_PICTURE, pictures.photo)
    style_picture = MessageHandler[BotContext, object](
        pictures.SINGLE_PICTURE, pictures.style_picture
    )
    own = CallbackQueryHandler[BotContext, object](buttons.own_style, pattern=r"^own$")
    choose = CallbackQueryHandler[BotContext, object](buttons.choose_style, pattern=r"^s[th]:")
    surprise = CallbackQueryHandler[BotContext, object](buttons.surprise, pattern=r"^rnd$")
    with warnings.catch_warnings():
        # PTB warns that per_message=False does not track buttons per message: intended, the
        # state is the user's (what their next picture means), whichever menu they press.
        warnings.filterwarnings("ignore", "If 'per_message=False'", PTBUserWarning)
        conversation = ConversationHandler(
            entry_points=[photo, own],
            states={
                State.CHOOSING_STYLE: [photo, own],
                State.WAITING_STYLE_PICTURE: [style_picture, own, choose, surprise],
            },
            fallbacks=[CommandHandler("forget", commands.forget)],
            name=NAME,
            persistent=True,
        )
    app.add_handler(conversation)
    app.add_handler(CommandHandler("start", commands.start))
    app.add_handler(CommandHandler("help", commands.help_command))
    app.add_handler(CommandHandler("styles", commands.styles))
    app.add_handler(CommandHandler("settings", commands.settings_command))
    app.add_handler(CommandHandler("lang", commands.lang_command))
    app.add_handler(CommandHandler("stats", commands.stats))
    app.add_handler(CommandHandler("forget", commands.forget))
    app.add_handler(MessageHandler(filters.COMMAND, commands.unknown_command))
    app.add_handler(MessageHandler(pictures.ALBUM_PICTURE, pictures.album_part))
    app.add_handler(
        MessageHandler(filters.TEXT | filters.Sticker.ALL, commands.text_instead_of_photo)
    )
    app.add_handler(CallbackQueryHandler(buttons.page, pattern=r"^pg:\d+$"))
    app.add_handler(choose)
    app.add_handler(surprise)
    app.add_handler(CallbackQueryHandler(buttons.show_settings, pattern=r"^cfg$"))
    app.add_handler(CallbackQueryHandler(buttons.change_setting, pattern=r"^set:"))
    app.add_handler(CallbackQueryHandler(buttons.set_language, pattern=r"^lang:"))
    app.add_handler(CallbackQueryHandler(buttons.cancel_job, pattern=r"^x:[0-9a-f]+$"))
    app.add_handler(CallbackQueryHandler(buttons.another_style, pattern=r"^again$"))
    app.add_handler(CallbackQueryHandler(buttons.repaint, pattern=r"^re:[-+cfr]$"))
    app.add_handler(CallbackQueryHandler(buttons.expired_button))
    # After every update, write what the conversation changed (PTB would wait for its timer).
    app.add_handler(TypeHandler(Update, _save_conversations), group=1)
    app.add_error_handler(errors.on_error)


async def _save_conversations(update: Update, context: BotContext) -> None:
    await context.application.update_persistence()


async def on_startup(app: Application) -> None:
    """Start the queue, publish the command menu, resume undelivered jobs, queue the updates
    fetched but not handled before the last stop (ahead of anything fetched now), serve
    /healthz."""
    svc: Services = app.bot_data["services"]
    await svc.queue.start()
    for lang in LANGUAGES:
        commands = [BotCommand(c, t(lang, f"cmd_{c}")) for c in COMMANDS]
        await app.bot.set_my_commands(commands, language_code=None if lang == "en" else lang)
    svc.resuming = asyncio.get_running_loop().create_task(_resume_when_reachable(svc))
    await svc.updates.replay(app.bot)
    if svc.settings.metrics_port is not None:
        from engine.observability.health import queue_check, start_health_server

        embedded = not svc.settings.redis_queue
        check = queue_check(svc.queue, expect_workers=embedded, report_device=embedded)
        svc.health = await start_health_server(svc.settings.metrics_port, check)
    log.info("bot started: %d paintings, api %s", len(svc.paintings), svc.settings.api_url)


async def _resume_when_reachable(svc: Services) -> None:
    """Follow every undelivered job again; while the queue is unreachable keep trying, so a bot
    started during a Redis outage serves users ("temporarily unavailable") and catches up."""
    backoff = RESUME_RETRY_S[0]
    while True:
        try:
            jobs = await svc.queue.undelivered()
        except QueueUnavailable:
            log.warning("queue unreachable: undelivered jobs resume when it is back")
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESUME_RETRY_S[1])
            continue
        await resume(svc.follower, jobs)
        return


async def on_stop(app: Application) -> None:
    """Stop following jobs; they stay undelivered in the queue and resume on the next start.
    Result uploads in flight finish first, however many (Follower.close). PTB has handled the
    updates it had fetched by now (Application.stop); any it had not stay in the store and
    are replayed on the next start."""
    svc: Services = app.bot_data["services"]
    if svc.resuming is not None:
        svc.resuming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await svc.resuming
    await svc.follower.close()


async def on_shutdown(app: Application) -> None:
    svc: Services = app.bot_data["services"]
    await svc.queue.close()  # a running job gets its grace period, else goes back in line
    await asyncio.to_thread(svc.store.close)  # after the writes handed over so far
    if svc.health is not None:
        await svc.health.cleanup()


@contextlib.asynccontextmanager
async def running(
    app: Application, poll_timeout: float = 1.0, webhook: dict[str, Any] | None = None
) -> AsyncIterator[Application]:
    """Run `app` with polling (or, given `webhook`, Updater.start_webhook's arguments, a
    webhook) inside an existing event loop, in `run_polling`'s order (initialize, post_init,
    polling, start … stop, post_stop, shutdown, post_shutdown)."""
    await app.initialize()
    try:
        if app.post_init:
            await app.post_init(app)
        assert app.updater is not None
        if webhook is not None:
            await app.updater.start_webhook(**webhook)
        else:
            await app.updater.start_polling(poll_interval=0.0, timeout=int(poll_timeout) or 1)
        await app.start()
        yield app
    finally:
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        if app.post_stop:
            await app.post_stop(app)
        await app.shutdown()
        if app.post_shutdown:
            await app.post_shutdown(app)


def run(settings: Settings, webhook_url: str | None = None, port: int = 8443) -> int:
    """Blocking: poll (or serve a webhook) until SIGINT/SIGTERM."""
    app = build_application(settings)
    if webhook_url:
        path = urlparse(webhook_url).path.strip("/") or "telegram"
        app.run_webhook(
            listen="0.0.0.0",
            port=port,
            url_path=path,
            webhook_url=webhook_url,
            secret_token=secrets.token_urlsafe(32),  # Telegram echoes it; others can't post
            allowed_updates=Update.ALL_TYPES,
        )
    else:
        app.run_polling(allowed_updates=Update.ALL_TYPES)
    return 0
