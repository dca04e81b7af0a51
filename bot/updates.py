"""Every update Telegram sends is handled, once, in its user's order, whatever happens to the
bot: `UpdateProcessor`, python-telegram-bot's BaseUpdateProcessor, does both.

**A write-ahead of updates.** With long polling Telegram forgets an update as soon as a
getUpdates arrives with a higher offset, and PTB's Updater sends that getUpdates as soon as the
previous batch is in `Application.update_queue`, long before the handlers have run
(telegram/ext/_updater.py, `polling_action_cb`: `await self.update_queue.put(update)` for each
update of the batch, then `_last_update_id = updates[-1].update_id + 1`, then the next round
asks again with that offset). So the last moment the bot has an update that Telegram has not
forgotten is that `put`. The processor's `inbox`, the queue handed to
`ApplicationBuilder.update_queue`, writes each update to the bot's store (bot.store) before its
`put` returns; the Updater cannot confirm what is not on disk yet. In webhook mode PTB's request
handler awaits the same `put` before it answers Telegram's POST
(telegram/ext/_utils/webhookhandler.py), so the 200 goes out only once the update is durable,
and Telegram retries an update whose write failed.

An update is marked handled once every handler group has run for it, and the conversation's
new state is written in that same transaction (bot.conversation stages it, bot.app hands it
over in a later group): a kill before the mark replays the update under the state it first
ran under. On start, before anything is fetched, `replay` queues every update that was written
and not handled: fetched before a kill -9, or left in the journal by a stop. Telegram may send
an update again (the bot died before it was confirmed): the store knows its id, and the copy is
dropped at the door.

**A store that fails** (disk full, an I/O error, a lock held past the busy timeout) never ends
polling: a failed write is retried with a growing pause (RETRY_S) inside `put`, so PTB's
polling loop, which retries only Telegram's errors, never sees it, and the Updater confirms
nothing that is not on disk (Telegram keeps unconfirmed updates 24 h). A handled mark is
retried the same way; a handler that failed on the store (bot.handlers.errors) is run again
after a pause, as a replay would run it. `health` is red while the store fails. Past
`outage_s` (ORSAY_STORE_OUTAGE_S) of failure with no success between, the processor asks the
application to stop (`connect`: Application.stop_running) and `exit_code` becomes
STORE_OUTAGE_EXIT, which `orsay bot` exits with, so its supervisor restarts it; what was not
written stays with Telegram, what was written and not handled is replayed.

**A replay gives the first run's answer, or says why not.** An update journaled more than
REPLAY_WITHIN_S ago is not run again but answered "that was a while ago" (its job key may be
gone: see REPLAY_WITHIN_S), and one whose handling began at MAX_STARTS starts without ending
(it kills the process: out of memory in a decode, a native crash) is set aside with a log line
and an apology; both are then marked handled. Each start that begins an update counts it in
the journal (Store.begin) before its handlers run; a held update (`hold`: an album part, whose
work runs in the album's timer) has not ended until released, so a poison album counts too.

**A stop leaves the backlog in the journal.** `stop_taking` (bot.app calls it first when it
stops) lets the running handlers finish and runs nothing else: an update that has not started
is closed unrun, stays unhandled and is replayed on the next start, so PTB's `Application.stop`
no longer works through the whole queued backlog.

**One user's updates in order.** A ConversationHandler relies on updates arriving one by one
(PTB's documentation says to keep concurrent updates off with it): a photo and a style press of
one user fetched in the same batch must run in that order, or the press paints the previous
photo. Each update waits until the previous update of its user is handled; different users run
at the same time, at most `running` handlers at once. The waiting happens in `do_process_update`,
after PTB's own semaphore has let the update in; so that one user's backlog cannot hold the
slots every other user needs, that semaphore is sized for updates in flight (IN_FLIGHT), and the
number of handlers running is this processor's own limit.

Why the bot's SQLite store, and not Redis when the queue is Redis: the bot keeps its users'
settings, photos and conversations in that store already (one bot process per token, with its
data dir on a volume), and an update is only worth as much as that state; Redis would add a
network round trip to every update for no process that could use it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from telegram import Bot, Update, User
from telegram.error import TelegramError
from telegram.ext import BaseUpdateProcessor

from bot.store import Journaled, Store
from bot.texts import DEFAULT, pick_language, t
from engine.observability.logs import log_event

log = logging.getLogger(__name__)
T = TypeVar("T")
RUNNING = 32  # handlers at once, across users (concurrent_updates(32) before)
IN_FLIGHT = 4096  # updates inside the processor at once, waiting for their turn or running
# A failing store write is tried again after 50 ms, then twice as long each time up to 2 s: a
# store back from an outage is seen within 2 s, and a failing one is asked at most once in 2 s.
RETRY_S = (0.05, 2.0)
# An update whose handling began at this many starts without ending is set aside: a first
# kill may be anything (a SIGKILL past the stop, the host going down), three in a row are it.
MAX_STARTS = 3
# How old a journaled update may be and still be replayed. A replayed press must find the job
# its first run made by the job's key (bot.handlers.jobs.job_key); the queues keep a key two
# days from the job's submit (engine.queue.embedded.store.KEEP_KEYS_S, the Redis backend's
# SUBMITTED_TTL_S), and the submit comes after the journal write, so a replay within one day
# of that write finds the key with a day to spare (clock skew between the bot and Redis, a
# prune that runs early). Older, it is answered "that was a while ago" instead: a second job
# for a press the user made yesterday is worse than asking again. Telegram itself keeps an
# update only 24 h, so the user expects nothing older.
REPLAY_WITHIN_S = 86400.0
STORE_OUTAGE_EXIT = 75  # `orsay bot`'s exit status past the outage bound (sysexits EX_TEMPFAIL)
TOO_OLD, SET_ASIDE = "update_too_old", "update_set_aside"  # what the user is told instead


class StoreOutage(Exception):
    """The store has failed past the outage bound: the processor stops retrying this write
    (the application is stopping) and the update stays unhandled, to be replayed."""


def store_fault(error: BaseException) -> bool:
    """An SQLite error that may go away (disk full, I/O error, locked, even a malformed page
    restored from a backup); misuse of the connection (ProgrammingError) would not."""
    return isinstance(error, sqlite3.DatabaseError) and not isinstance(
        error, sqlite3.ProgrammingError
    )


@dataclass
class Turn:
    """An update's place in its user's line: it runs once `after` is set (None: at once), and
    sets `done` when it has been handled. With `instead` (TOO_OLD, SET_ASIDE) its handlers do
    not run: its user is told that text."""

    user: int | None
    after: asyncio.Event | None
    done: asyncio.Event
    instead: str | None = None


class Inbox(asyncio.Queue[object]):
    """`Application.update_queue`: `put` writes an update ahead before queueing it, retrying
    while the store fails (it returns only once the update is on disk, or is cancelled)."""

    def __init__(self, processor: UpdateProcessor) -> None:
        super().__init__()
        self.processor = processor

    async def put(self, item: object) -> None:
        if isinstance(item, Update) and not await self.processor.admit(item):
            return  # Telegram sent it again: written (and maybe handled) already
        self.put_nowait(item)


class UpdateProcessor(BaseUpdateProcessor):
    """The bot's update processor (module docstring): hand `inbox` to
    ApplicationBuilder.update_queue and the processor to .concurrent_updates, and call
    `connect` and `replay` in post_init."""

    def __init__(self, store: Store, running: int = RUNNING, outage_s: float = 300.0) -> None:
        super().__init__(IN_FLIGHT)
        self.store = store
        self.inbox = Inbox(self)
        self.running = asyncio.Semaphore(running)
        self.outage_s = outage_s  # ORSAY_STORE_OUTAGE_S
        self.turns: dict[int, Turn] = {}  # update id -> its turn, from admission to its end
        self.last: dict[int, asyncio.Event] = {}  # user -> `done` of their latest update
        self.held: set[int] = set()  # handled, but their effect is still to come (`hold`)
        # album (media group) -> its parts admitted and not yet through their handlers
        self.album_parts: Counter[str] = Counter()
        self.taking = True  # False after stop_taking: nothing more starts
        self.waiting: set[asyncio.Task[Any]] = set()  # tasks waiting for their turn
        self.store_failures: set[int] = set()  # updates a handler failed on the store
        self.failing_since: float | None = None  # monotonic time of the first failure in a row
        self.gave_up = False  # the store failed past outage_s
        self.on_outage: Callable[[], object] | None = None  # stops the application
        self.rerun: Callable[[Update], Awaitable[None]] | None = None  # the update's handlers

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    def connect(self, app: Any) -> None:
        """Let the processor run an update's handlers again (`app.process_update`, after a
        handler failed on the store) and stop `app` past the outage bound (`stop_running`,
        which ends run_polling / run_webhook as a SIGTERM does)."""
        self.rerun = app.process_update
        self.on_outage = app.stop_running

    @property
    def exit_code(self) -> int:
        """What `orsay bot` exits with: STORE_OUTAGE_EXIT once the store failed past the
        outage bound, else 0."""
        return STORE_OUTAGE_EXIT if self.gave_up else 0

    async def health(self) -> dict[str, Any]:
        """/healthz's part on updates: red while the store fails, since no update fetched
        meanwhile is written, confirmed or handled."""
        if self.failing_since is None and not self.gave_up:
            return {"ok": True, "updates": "ok"}
        if self.gave_up:
            return {"ok": False, "updates": "the store failed too long: stopping"}
        failing_s = time.monotonic() - self.failing_since if self.failing_since else 0.0
        return {"ok": False, "updates": f"the store fails: retrying for {failing_s:.0f} s"}

    def stop_taking(self) -> None:
        """Start nothing more (module docstring): an update that has not started running is
        closed unrun, stays unhandled and is replayed on the next start; those running
        finish. Call it first when stopping, before PTB's Application.stop."""
        self.taking = False
        for task in self.waiting:
            task.cancel()

    async def admit(self, update: Update) -> bool:
        """Write `update` ahead and give it its turn; False if the store knows it already.
        Nothing awaits between the turn and the caller's queueing, so turns follow the queue."""
        payload = json.dumps(update.to_dict())
        fresh = await self._durably(
            lambda: self.store.journal(update.update_id, payload), forever=True
        )
        if fresh:
            self._line_up(update)
        return fresh

    async def replay(self, bot: Bot) -> int:
        """Queue every update written ahead and not handled (call before fetching starts);
        one too old or begun too often is queued to be answered instead (module docstring)."""
        rows = await self.store.backlog()
        now = time.time()
        for row in rows:
            try:
                update = Update.de_json(json.loads(row.payload), bot)
            except Exception:  # unreadable: never handled, never replayed again
                log.exception("update %d in the store is unreadable; dropped", row.update_id)
                await self._durably(partial(self.store.handled, row.update_id))
                continue
            self._line_up(update, _instead(row, now))
            self.inbox.put_nowait(update)
        if rows:
            log.info("replaying %d update(s) fetched before the last stop", len(rows))
        return len(rows)

    def hold(self, update_id: int) -> None:
        """Leave the update unhandled when its handlers return, because what it asks for is
        still to come (an album's part waits for the rest of the album): a crash before
        `release` replays it. Its user's next update does not wait for that."""
        self.held.add(update_id)

    async def release(self, update_ids: list[int]) -> None:
        """What the held updates asked for is done: mark them handled (a store out past the
        bound leaves them to the next start's replay)."""
        for update_id in update_ids:
            self.held.discard(update_id)
            try:
                await self._durably(partial(self.store.handled, update_id))
            except StoreOutage:
                log.warning("update %d stays unhandled: the store is out", update_id)

    def failed_on_store(self, update_id: int, error: BaseException) -> None:
        """A handler of the update failed on the store (bot.handlers.errors): run the update
        again after a pause, rather than mark it handled with its work undone."""
        self._store_failed(error)
        self.store_failures.add(update_id)

    def arriving(self, media_group: str) -> int:
        """How many parts of the album are admitted and not yet through their handlers: under
        load a part may wait in its user's line longer than the album's settle time, and the
        album must wait for it rather than end without it (bot.handlers.pictures)."""
        return self.album_parts[media_group]

    def _line_up(self, update: Update, instead: str | None = None) -> None:
        group = _album_of(update)
        if group is not None:
            self.album_parts[group] += 1
        user = _user_of(update)
        done = asyncio.Event()
        after = self.last.get(user) if user is not None else None
        if user is not None:
            self.last[user] = done
        self.turns[update.update_id] = Turn(user, after, done, instead)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        turn = self.turns.pop(update.update_id, None) if isinstance(update, Update) else None
        if turn is None:  # not from the inbox (e.g. put on the queue by hand): no line
            await coroutine
            return
        assert isinstance(update, Update)
        try:
            if await self._take_turn(turn):
                try:
                    await self._handle(update, turn, coroutine)
                finally:
                    self.running.release()
        except StoreOutage:
            log.warning("update %d stays unhandled: the store is out", update.update_id)
        finally:
            if asyncio.iscoroutine(coroutine):
                coroutine.close()  # not run (stopping, answered instead): replayed or handled
            self.store_failures.discard(update.update_id)
            group = _album_of(update)
            if group is not None:
                self.album_parts[group] -= 1
                if self.album_parts[group] <= 0:
                    del self.album_parts[group]
            turn.done.set()
            if turn.user is not None and self.last.get(turn.user) is turn.done:
                del self.last[turn.user]

    async def _take_turn(self, turn: Turn) -> bool:
        """Wait for the user's previous update, then for a running slot; False, holding no
        slot, once `stop_taking` was called (before or while it waited)."""
        task = asyncio.current_task()
        if not self.taking or task is None:
            return False
        self.waiting.add(task)
        try:
            if turn.after is not None:
                await turn.after.wait()
            await self.running.acquire()
        except asyncio.CancelledError:
            if self.taking or task.uncancel() > 0:
                raise  # not stop_taking's cancel: the task itself is being cancelled
            return False
        finally:
            self.waiting.discard(task)
        if not self.taking:
            self.running.release()
            return False
        return True

    async def _handle(self, update: Update, turn: Turn, coroutine: Awaitable[Any]) -> None:
        """Run the update (or answer it `instead`), then mark it handled, unless it is held or
        was left for the next start."""
        update_id = update.update_id
        if turn.instead is not None:
            await self._answer_instead(update, turn.instead)
        else:
            await self._durably(partial(self.store.begin, update_id))
            try:
                ran = await self._run(update, coroutine)
            except Exception:  # PTB's own failure (handlers' go to the error handler)
                await self._durably(partial(self.store.handled, update_id, turn.user))
                raise  # a poison pill: once only
            if not ran or update_id in self.held:
                return
        await self._durably(partial(self.store.handled, update_id, turn.user))

    async def _run(self, update: Update, coroutine: Awaitable[Any]) -> bool:
        """Run the update's handlers, and again after a pause while one fails on the store: a
        handler is safe to run twice, as a replay runs it (jobs keyed by the update, settings
        changed once per press). False: it failed on the store and is left unhandled for the
        next start (stopping, past the outage bound, or nothing to run it again with)."""
        await coroutine
        pause = RETRY_S[0]
        while update.update_id in self.store_failures:
            self.store_failures.discard(update.update_id)
            if not self.taking or self.gave_up or self.rerun is None:
                return False
            await asyncio.sleep(pause)
            pause = min(2 * pause, RETRY_S[1])
            await self.rerun(update)
        return True

    async def _answer_instead(self, update: Update, text: str) -> None:
        """Tell the update's user `text` (TOO_OLD, SET_ASIDE) instead of running it; a message
        Telegram refuses is let go (the update is marked handled all the same)."""
        chat = update.effective_chat
        if chat is None:
            return
        lang = await self._language(update.effective_user)
        try:
            await update.get_bot().send_message(chat.id, t(lang, text))
        except TelegramError as exc:
            log.warning("could not tell update %d's user: %s", update.update_id, exc)

    async def _language(self, user: User | None) -> str:
        if user is None:
            return DEFAULT
        try:
            chosen = (await self.store.user(user.id)).lang
        except sqlite3.Error:
            chosen = None
        return chosen or pick_language(user.language_code)

    async def _durably(self, write: Callable[[], Awaitable[T]], *, forever: bool = False) -> T:
        """`write()`, a store write, until it succeeds, pausing longer after each failure
        (RETRY_S). Past the outage bound it raises StoreOutage instead of trying again, unless
        `forever` (the journal: its update is Telegram's until written; a stop cancels it)."""
        pause = RETRY_S[0]
        while True:
            try:
                result = await write()
            except Exception as exc:
                if not store_fault(exc):
                    raise
                self._store_failed(exc)
                if self.gave_up and not forever:
                    raise StoreOutage(str(exc)) from exc
                await asyncio.sleep(pause)
                pause = min(2 * pause, RETRY_S[1])
                continue
            self._store_works()
            return result

    def _store_failed(self, error: BaseException) -> None:
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = now
            log_event(log, "store.failing", level=logging.WARNING, error=str(error))
        elif not self.gave_up and now - self.failing_since >= self.outage_s:
            self.gave_up = True
            failing_s = round(now - self.failing_since, 1)
            log_event(log, "store.outage", level=logging.CRITICAL, failing_s=failing_s)
            if self.on_outage is not None:
                self.on_outage()

    def _store_works(self) -> None:
        if self.failing_since is not None:
            failed_s = round(time.monotonic() - self.failing_since, 1)
            log_event(log, "store.back", failed_s=failed_s)
            self.failing_since = None


def _instead(row: Journaled, now: float) -> str | None:
    """What a replayed update gets instead of its handlers, if anything (module docstring)."""
    if row.attempts >= MAX_STARTS:
        event = "update.set_aside"
        log_event(log, event, level=logging.WARNING, update=row.update_id, starts=row.attempts)
        return SET_ASIDE
    if now - row.received_at > REPLAY_WITHIN_S:
        log_event(log, "update.too_old", update=row.update_id, age_s=round(now - row.received_at))
        return TOO_OLD
    return None


def _album_of(update: Update) -> str | None:
    """The media group (album) the update's message is part of, if any."""
    message = update.effective_message
    return message.media_group_id if message is not None else None


def _user_of(update: Update) -> int | None:
    """Whose line an update joins: its user's, else its chat's; None runs at once."""
    if update.effective_user is not None:
        return update.effective_user.id
    if update.effective_chat is not None:
        return update.effective_chat.id
    return None
