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

An update is marked handled once every handler group has run for it, the conversation's new
state included (bot.app saves it in a later group). On start, before anything is fetched,
`replay` queues every update that was written and not handled: fetched before a kill -9,
or left in the queue by a stop. Telegram may send an update again (the bot died before it was
confirmed): the store knows its id, and the copy is dropped at the door.

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
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from telegram import Bot, Update
from telegram.ext import BaseUpdateProcessor

from bot.store import Store

log = logging.getLogger(__name__)
RUNNING = 32  # handlers at once, across users (concurrent_updates(32) before)
IN_FLIGHT = 4096  # updates inside the processor at once, waiting for their turn or running


@dataclass
class Turn:
    """An update's place in its user's line: it runs once `after` is set (None: at once), and
    sets `done` when it has been handled."""

    user: int | None
    after: asyncio.Event | None
    done: asyncio.Event


class Inbox(asyncio.Queue[object]):
    """`Application.update_queue`: `put` writes an update ahead before queueing it."""

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
    `replay` in post_init."""

    def __init__(self, store: Store, running: int = RUNNING) -> None:
        super().__init__(IN_FLIGHT)
        self.store = store
        self.inbox = Inbox(self)
        self.running = asyncio.Semaphore(running)
        self.turns: dict[int, Turn] = {}  # update id -> its turn, from admission to its end
        self.last: dict[int, asyncio.Event] = {}  # user -> `done` of their latest update
        self.held: set[int] = set()  # handled, but their effect is still to come (`hold`)

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    async def admit(self, update: Update) -> bool:
        """Write `update` ahead and give it its turn; False if the store knows it already.
        Nothing awaits between the turn and the caller's queueing, so turns follow the queue."""
        fresh = await self.store.journal(update.update_id, json.dumps(update.to_dict()))
        if fresh:
            self._line_up(update)
        return fresh

    async def replay(self, bot: Bot) -> int:
        """Queue every update written ahead and not handled (call before fetching starts)."""
        rows = await self.store.unhandled()
        for update_id, payload in rows:
            try:
                update = Update.de_json(json.loads(payload), bot)
            except Exception:  # unreadable: never handled, never replayed again
                log.exception("update %d in the store is unreadable; dropped", update_id)
                await self.store.handled(update_id)
                continue
            self._line_up(update)
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
        """What the held updates asked for is done: mark them handled."""
        for update_id in update_ids:
            self.held.discard(update_id)
            await self.store.handled(update_id)

    def _line_up(self, update: Update) -> None:
        user = _user_of(update)
        done = asyncio.Event()
        after = self.last.get(user) if user is not None else None
        if user is not None:
            self.last[user] = done
        self.turns[update.update_id] = Turn(user, after, done)

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        turn = self.turns.pop(update.update_id, None) if isinstance(update, Update) else None
        if turn is None:  # not from the inbox (e.g. put on the queue by hand): no line
            await coroutine
            return
        assert isinstance(update, Update)
        started = False
        try:
            if turn.after is not None:
                await turn.after.wait()
            async with self.running:
                started = True
                try:
                    await coroutine
                except Exception:  # PTB's own failure (handlers' go to the error handler)
                    await self.store.handled(update.update_id)  # a poison pill: once only
                    raise
            if update.update_id not in self.held:
                await self.store.handled(update.update_id)
        finally:
            if not started and asyncio.iscoroutine(coroutine):
                coroutine.close()  # cancelled in line: it stays unhandled and is replayed
            turn.done.set()
            if turn.user is not None and self.last.get(turn.user) is turn.done:
                del self.last[turn.user]


def _user_of(update: Update) -> int | None:
    """Whose line an update joins: its user's, else its chat's; None runs at once."""
    if update.effective_user is not None:
        return update.effective_user.id
    if update.effective_chat is not None:
        return update.effective_chat.id
    return None
