"""The Telegram application: settings in, a ready `Application` out (`build_application`), plus
the start/stop plumbing shared by `orsay bot`, the tests and the load bench."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from urllib.parse import urlparse

from telegram import BotCommand, Update
from telegram.ext import (
    Application,
    ApplicationBuilder,
    CallbackQueryHandler,
    CommandHandler,
    MessageHandler,
    filters,
)

from bot import handlers
from bot.config import Settings
from bot.follow import Follower, resume
from bot.pacing import ForegroundFirstLimiter
from bot.services import Services
from bot.store import Store
from bot.texts import LANGUAGES, t
from engine.queue import JobQueue, Painter, QueueLimits, open_queue

log = logging.getLogger(__name__)
COMMANDS = ("start", "help", "styles", "settings", "lang", "forget")


def make_painter(settings: Settings) -> Painter:
    """The painter for the embedded queue: the engine, or a dev/test painter by name
    (`ORSAY_PAINTER=stub` or `module:factory`)."""
    spec = settings.painter
    if spec == "stub":
        from engine.queue.stub_painter import StubPainter

        return StubPainter()
    if spec:
        module, _, name = spec.partition(":")
        factory = getattr(importlib.import_module(module), name or "make_painter")
        painter: Painter = factory()
        return painter
    from engine.queue.painter import make_engine_painter

    return make_engine_painter(
        settings.model, settings.weights, settings.device, settings.max_size or 512
    )


def build_application(
    settings: Settings, *, queue: JobQueue | None = None, painter: Painter | None = None
) -> Application:
    """The bot, not started. Embedded queues paint in this process with `painter` (default:
    `make_painter(settings)`); with ORSAY_QUEUE=redis://… workers paint and `painter` is unused."""
    if settings.gallery_dir:
        os.environ.setdefault("ORSAY_GALLERY_DIR", settings.gallery_dir)
    from engine.gallery import list_paintings

    if queue is None:
        redis = (settings.queue_url or "").startswith(("redis://", "rediss://", "unix://"))
        if painter is None and not redis:
            painter = make_painter(settings)
        queue = open_queue(
            settings.queue_url,
            painter=painter,
            data_dir=settings.data_dir,
            limits=QueueLimits(per_user=2, max_queue=100),
        )
    app = (
        ApplicationBuilder()
        .token(settings.token)
        .base_url(settings.base_url)
        .base_file_url(settings.base_file_url)
        .rate_limiter(ForegroundFirstLimiter(settings.max_rate, max_retries=2))
        .concurrent_updates(32)
        # httpcore scans its whole pool for every request: PTB's default of 256 connections
        # made that scan most of the bot's CPU under load; 32 is plenty for one bot.
        .connection_pool_size(32)
        .pool_timeout(30.0)
        .post_init(on_startup)
        .post_stop(on_stop)
        .post_shutdown(on_shutdown)
        .build()
    )
    store = Store(settings.data_dir / "bot")
    app.bot_data["services"] = Services(
        settings=settings,
        queue=queue,
        store=store,
        follower=Follower(app.bot, queue, store),
        paintings=list_paintings(present_only=True),
    )

    # -- registration: one handler per user intent -----------------------------------------
    h = handlers
    app.add_handler(CommandHandler("start", h.start))
    app.add_handler(CommandHandler("help", h.help_command))
    app.add_handler(CommandHandler("styles", h.styles))
    app.add_handler(CommandHandler("settings", h.settings_command))
    app.add_handler(CommandHandler("lang", h.lang_command))
    app.add_handler(CommandHandler("stats", h.stats))
    app.add_handler(CommandHandler("forget", h.forget))
    app.add_handler(MessageHandler(filters.COMMAND, h.unknown_command))
    app.add_handler(MessageHandler(filters.PHOTO | filters.Document.ALL, h.picture))
    app.add_handler(MessageHandler(filters.TEXT | filters.Sticker.ALL, h.text_instead_of_photo))
    app.add_handler(CallbackQueryHandler(h.page, pattern=r"^pg:\d+$"))
    app.add_handler(CallbackQueryHandler(h.choose_style, pattern=r"^s[th]:"))
    app.add_handler(CallbackQueryHandler(h.surprise, pattern=r"^rnd$"))
    app.add_handler(CallbackQueryHandler(h.own_style, pattern=r"^own$"))
    app.add_handler(CallbackQueryHandler(h.show_settings, pattern=r"^cfg$"))
    app.add_handler(CallbackQueryHandler(h.change_setting, pattern=r"^set:"))
    app.add_handler(CallbackQueryHandler(h.set_language, pattern=r"^lang:"))
    app.add_handler(CallbackQueryHandler(h.cancel_job, pattern=r"^x:[0-9a-f]+$"))
    app.add_handler(CallbackQueryHandler(h.another_style, pattern=r"^again$"))
    app.add_handler(CallbackQueryHandler(h.repaint, pattern=r"^re:[-+c]$"))
    app.add_handler(CallbackQueryHandler(h.expired_button))
    app.add_error_handler(h.on_error)
    return app


async def on_startup(app: Application) -> None:
    """Start the queue, publish the command menu, resume undelivered jobs, serve /healthz."""
    svc: Services = app.bot_data["services"]
    await svc.queue.start()
    for lang in LANGUAGES:
        commands = [BotCommand(c, t(lang, f"cmd_{c}")) for c in COMMANDS]
        await app.bot.set_my_commands(commands, language_code=None if lang == "en" else lang)
    await resume(svc.follower, await svc.queue.undelivered())
    if svc.settings.metrics_port is not None:
        from engine.observability.health import queue_check, start_health_server

        embedded = not (svc.settings.queue_url or "").startswith(("redis", "unix"))
        check = queue_check(svc.queue, expect_workers=embedded, report_device=embedded)
        svc.health = await start_health_server(svc.settings.metrics_port, check)
    log.info("bot started: %d paintings, api %s", len(svc.paintings), svc.settings.api_url)


async def on_stop(app: Application) -> None:
    """Stop following jobs; they stay undelivered in the queue and resume on the next start."""
    await app.bot_data["services"].follower.close()


async def on_shutdown(app: Application) -> None:
    svc: Services = app.bot_data["services"]
    await svc.queue.close()  # a running job gets its grace period, else goes back in line
    svc.store.close()
    if svc.health is not None:
        await svc.health.cleanup()


@contextlib.asynccontextmanager
async def running(app: Application, poll_timeout: float = 1.0) -> AsyncIterator[Application]:
    """Run `app` with polling inside an existing event loop, in `run_polling`'s order
    (initialize, post_init, polling, start … stop, post_stop, shutdown, post_shutdown)."""
    await app.initialize()
    try:
        if app.post_init:
            await app.post_init(app)
        assert app.updater is not None
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
