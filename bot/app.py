"""The Telegram application: settings in, a ready `Application` out (`build_application`), plus
the start/stop plumbing shared by `orsay bot`, the tests and the load bench.

The stop has one deadline, ORSAY_STOP_S (bot.pacing.StopDeadline), from SIGTERM to the process's
exit; compose's stop_grace_period is above it. Every stop begins with `begin_stop`: updates not
yet running stay in the journal for the next start (UpdateProcessor.stop_taking), no delivery
starts an upload, and the clock runs. Telegram calls end by the deadline's cut-off (bot.pacing),
the deliveries with them (Follower.close), the queue and the store get the rest, each step
bounded by what is left. What still runs at the deadline (a call hung in native code, a thread
that will not end) is cut by a watchdog thread, which exits the process (STOP_OVERRAN_EXIT).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import threading
import time
import warnings
from collections.abc import AsyncIterator, Awaitable
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
from bot.pacing import ForegroundFirstLimiter, StopDeadline
from bot.services import Services
from bot.store import PRUNE_EVERY_S, Store
from bot.texts import LANGUAGES, t
from bot.updates import UpdateProcessor
from engine.queue import JobQueue, Painter, QueueUnavailable, open_queue
from engine.queue.painter_choice import make_painter

log = logging.getLogger(__name__)
COMMANDS = ("start", "help", "styles", "settings", "lang", "forget")
RESUME_RETRY_S = (1.0, 10.0)  # back-off (first, most) for resuming while the queue is down
STOP_OVERRAN_EXIT = 70  # `orsay bot`'s exit status when the watchdog ended the stop (EX_SOFTWARE)


class BotApplication(Application[Any, Any, Any, Any, Any, Any]):
    """PTB's Application, whose `stop_running` (what bot.updates calls past a store outage)
    begins the bot's stop first, as a signal does."""

    def stop_running(self) -> None:
        begin_stop(self)
        super().stop_running()


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
    deadline = StopDeadline(settings.stop_s)  # the stop's, for the limiter and the follower
    # each update on disk before Telegram forgets it; in order; a failing store retried
    updates = UpdateProcessor(store, outage_s=settings.store_outage_s)
    app = (
        ApplicationBuilder()
        .application_class(BotApplication)
        .token(require_token(settings))
        .base_url(settings.base_url)
        .base_file_url(settings.base_file_url)
        .context_types(ContextTypes(context=BotContext))
        .persistence(StorePersistence(store))
        .rate_limiter(ForegroundFirstLimiter(settings.telegram_rate, deadline=deadline))
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
        follower=Follower(app.bot, queue, store, deadline=deadline),
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
    svc.updates.connect(app)  # reruns what failed on the store; stops the bot past its outage
    await svc.updates.replay(app.bot)
    if app.job_queue is not None:  # rows past their age go while the bot runs (Store.prune)
        app.job_queue.run_repeating(lambda _: svc.store.prune(), PRUNE_EVERY_S, name="prune")
    if svc.settings.metrics_port is not None:
        from engine.observability.health import all_of, queue_check, start_health_server

        embedded = not svc.settings.redis_queue
        queue = queue_check(svc.queue, expect_workers=embedded, report_device=embedded)
        check = all_of(queue, svc.updates.health)  # red too while updates cannot be written
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


def begin_stop(app: Application) -> None:
    """The first step of every stop (a signal, `stop_running`, the end of `running`), once: no
    update starts any more (the backlog stays in the journal and is replayed on the next start),
    no delivery starts an upload, and the stop's deadline runs."""
    svc: Services = app.bot_data["services"]
    if svc.follower.stopping:
        return
    svc.updates.stop_taking()
    svc.follower.stop()
    log.info("stopping: at most %.0f s to exit (ORSAY_STOP_S)", svc.follower.deadline.stop_s)


async def _within(seconds: float, step: Awaitable[None], what: str) -> None:
    """Await one step of the stop, cut (and logged) when its share of the deadline is over."""
    try:
        await asyncio.wait_for(step, max(seconds, 0.1))
    except TimeoutError:
        log.warning("stopping: %s cut at the deadline", what)


async def on_stop(app: Application) -> None:
    """Stop following jobs; they stay undelivered in the queue and resume on the next start.
    Result uploads in flight run until the deadline's cut-off (Follower.close). Updates not
    started when the stop began stay in the journal and are replayed on the next start."""
    begin_stop(app)
    svc: Services = app.bot_data["services"]
    if svc.resuming is not None:
        svc.resuming.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await svc.resuming
    await svc.follower.close()


async def on_shutdown(app: Application) -> None:
    """Close the queue, the store and /healthz within what is left of the stop's deadline."""
    begin_stop(app)
    svc: Services = app.bot_data["services"]
    deadline = svc.follower.deadline
    await svc.follower.close()  # done already, unless the stop came before PTB had started
    # a running job gets its grace period (or what is left of the stop), else goes back in line
    await _within(deadline.left(), svc.queue.close(), "closing the queue")
    # after the writes handed over so far
    await _within(deadline.left(), asyncio.to_thread(svc.store.close), "closing the store")
    if svc.health is not None:
        await svc.health.cleanup()


@contextlib.asynccontextmanager
async def running(
    app: Application, poll_timeout: float = 1.0, webhook: dict[str, Any] | None = None
) -> AsyncIterator[Application]:
    """Run `app` with polling (or, given `webhook`, Updater.start_webhook's arguments, a
    webhook) inside an existing event loop, in `run_polling`'s order (initialize, post_init,
    polling, start … stop, post_stop, shutdown, post_shutdown), the stop's steps within its
    deadline (module docstring)."""
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
        begin_stop(app)
        deadline: StopDeadline = app.bot_data["services"].follower.deadline
        if app.updater is not None and app.updater.running:
            await _within(deadline.calls_left(), app.updater.stop(), "fetching")
        if app.running:  # the running handlers finish; nothing else starts (begin_stop)
            await _within(deadline.calls_left(), app.stop(), "the running handlers")
        if app.post_stop:
            await app.post_stop(app)
        await _within(deadline.left(), app.shutdown(), "PTB's shutdown")
        if app.post_shutdown:
            await app.post_shutdown(app)


def run(settings: Settings, webhook_url: str | None = None, port: int = 8443) -> int:
    """Blocking: poll (or serve a webhook) until SIGINT/SIGTERM, or until the store has
    failed past ORSAY_STORE_OUTAGE_S (bot.updates); returns the exit status."""
    app = build_application(settings)
    # PTB's stop signals, handled here: the stop begins before anything else, and the watchdog
    # waits for it (the loop PTB runs is this one: it takes the current event loop)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGABRT):
        loop.add_signal_handler(sig, _on_signal, app)
    deadline = app.bot_data["services"].follower.deadline
    threading.Thread(target=_watchdog, args=(deadline,), name="stop-watchdog", daemon=True).start()
    if webhook_url:
        path = urlparse(webhook_url).path.strip("/") or "telegram"
        app.run_webhook(
            listen="0.0.0.0",
            port=port,
            url_path=path,
            webhook_url=webhook_url,
            secret_token=secrets.token_urlsafe(32),  # Telegram echoes it; others can't post
            allowed_updates=Update.ALL_TYPES,
            stop_signals=None,
        )
    else:
        app.run_polling(allowed_updates=Update.ALL_TYPES, stop_signals=None)
    # non-zero when the store failed past ORSAY_STORE_OUTAGE_S: the supervisor restarts the bot
    exit_code: int = app.bot_data["services"].updates.exit_code
    return exit_code


def _on_signal(app: Application) -> None:
    """SIGTERM (or SIGINT): begin the stop, then end run_polling as PTB's own handler does. A
    second signal changes nothing: the stop is under way, bounded by its deadline."""
    if app.bot_data["services"].follower.stopping:
        log.info("stopping already")
        return
    begin_stop(app)
    raise SystemExit


def _watchdog(deadline: StopDeadline) -> None:
    """The last resort, on its own thread so that a blocked event loop cannot hold it: at the
    stop's deadline the process exits, whatever still runs. It writes to the file descriptor,
    not through logging, whose lock a hung thread may hold."""
    deadline.began.wait()
    time.sleep(max(0.0, deadline.left()))
    message = f"orsay bot: the stop deadline (ORSAY_STOP_S={deadline.stop_s:g} s) passed; exiting\n"
    os.write(2, message.encode())
    os._exit(STOP_OVERRAN_EXIT)
