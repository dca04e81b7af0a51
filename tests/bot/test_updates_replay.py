"""What a replay of a journaled update does (bot.updates), issue 30: a stop leaves the backlog
in the journal (finding 4), a replay gives the first run's answer (finding 5: the 🎲 draw, and
the conversation state written with the handled mark), an update older than its job key is
answered instead of replayed (finding 7), and an update whose handling began at three starts
without ending is set aside with an apology (finding 8)."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from telegram import Update

from bot.conversation import NAME, State, StorePersistence
from bot.handlers import buttons
from bot.store import Store, UserPrefs
from bot.updates import MAX_STARTS, REPLAY_WITHIN_S, UpdateProcessor
from engine.queue.embedded.store import KEEP_KEYS_S
from engine.queue.redis_backend.keys import SUBMITTED_TTL_S
from tests.bot.test_updates import journal_before_start, photo_update, text_update
from tests.doubles.bot_helpers import BotFactory, eventually, jpeg
from tests.doubles.broken_store import DISK_FULL, break_store
from tests.doubles.fake_telegram import FakeTelegram
from tests.doubles.link import SLOW_LINK


async def lined_up(processor: UpdateProcessor, *updates: Update) -> list[Update]:
    """`updates` through the inbox, as the Application's fetcher takes them."""
    for update in updates:
        await processor.inbox.put(update)
    taken = [processor.inbox.get_nowait() for _ in updates]
    assert all(isinstance(update, Update) for update in taken)
    return taken  # type: ignore[return-value]


# -- finding 4: a stop leaves the backlog in the journal ------------------------------------


async def test_after_stop_taking_only_the_running_update_finishes(tmp_path: Path) -> None:
    """Before: no stop_taking, and app.stop() ran the whole queued backlog."""
    store = Store(tmp_path)
    processor = UpdateProcessor(store, running=1)
    first, same_user, other_user = await lined_up(
        processor, text_update(41, 1), text_update(42, 1), text_update(43, 2)
    )
    ran: list[int] = []
    go_on = asyncio.Event()

    async def handle(update_id: int) -> None:
        ran.append(update_id)
        await go_on.wait()

    tasks = [
        asyncio.create_task(processor.process_update(update, handle(update.update_id)))
        for update in (first, same_user, other_user)
    ]
    await eventually(lambda: asyncio.sleep(0, ran), [41])
    processor.stop_taking()
    go_on.set()  # the running one finishes …
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    [late] = await lined_up(processor, text_update(44, 3))
    await processor.process_update(late, handle(44))  # … and nothing else starts
    assert ran == [41]
    assert [update_id for update_id, _ in await store.unhandled()] == [42, 43, 44]
    store.close()


@pytest.mark.parametrize("link", [SLOW_LINK], indirect=True, ids=["slow"])
async def test_a_stop_leaves_the_queued_backlog_for_the_next_start(
    telegram: FakeTelegram, start_bot: BotFactory, bot_env: dict[str, str]
) -> None:
    """Six photos of one user in one batch, each fetched over the slow link (getFile 300 ms):
    the stop comes after the first menu. The photo running then finishes; the rest stay in
    the journal, and the next start answers each of them, once."""
    ann = telegram.user(813)
    async with start_bot() as app:
        for seed in range(6):
            ann.photo(jpeg(seed=120 + seed))
        await ann.wait_menu()
        app.bot_data["services"].updates.stop_taking()  # what bot.app's stop does first
    menus_at_stop = len(ann.menus())
    store = Store(Path(bot_env["ORSAY_DATA_DIR"]) / "bot")
    left = len(await store.unhandled())
    store.close()
    assert menus_at_stop <= 2 and left == 6 - menus_at_stop  # at most the running one more
    async with start_bot() as app:
        await ann.wait_menu(after=5)
        await eventually(app.bot_data["services"].store.unhandled, [])
        await asyncio.sleep(0.3)  # would a photo be answered twice?
    assert len(ann.menus()) == 6


# -- finding 5: a replay gives the first run's answer ----------------------------------------


def press_update(update_id: int, user: int, query_id: str, data: str) -> Update:
    query = {
        "id": query_id,
        "from": {"id": user, "is_bot": False, "first_name": "U"},
        "chat_instance": str(user),
        "data": data,
    }
    update = Update.de_json({"update_id": update_id, "callback_query": query}, None)
    assert update is not None
    return update


async def test_a_replayed_surprise_draws_the_painting_of_the_first_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first run saves its draw as last_style; the draw excludes last_style, so before the
    fix a replay could never draw the same painting. And a first run killed before it saved
    anything draws the same again, whatever the process: the draw is seeded by the press."""
    paintings = [SimpleNamespace(slug=f"p{i}", title=f"P{i}") for i in range(8)]
    store = Store(tmp_path)
    drawn: list[str] = []
    context: Any = SimpleNamespace(
        services=SimpleNamespace(paintings=paintings, store=store),
        prefs=UserPrefs(7, last_style="p0"),
        lang="en",
        user_id=7,
    )

    async def paint(context: Any, style: str, key: str) -> None:
        drawn.append(style)

    async def answer(*args: Any, **kwargs: Any) -> None:
        pass

    monkeypatch.setattr(buttons, "paint_stored_photo", paint)
    monkeypatch.setattr(buttons, "answer", answer)
    for n in range(20):
        press = press_update(500 + n, 7, f"cq-{n}", "rnd")
        assert await store.journal(press.update_id, json.dumps(press.to_dict()))
        context.prefs = UserPrefs(7, last_style="p0")
        await buttons.surprise(press, context)  # the first run: saves its draw …
        context.prefs = UserPrefs(7, last_style=drawn[-1])  # … so the replay sees it
        await buttons.surprise(press, context)
        assert drawn[-1] == drawn[-2] != "p0", f"press {n}"
        unjournaled = press_update(900 + n, 7, f"cq-{n}", "rnd")  # killed before any write
        context.prefs = UserPrefs(7, last_style="p0")
        await buttons.surprise(unjournaled, context)
        assert drawn[-1] == drawn[-2], f"press {n}, in another process"
    assert len(set(drawn)) > 1  # a draw, not a constant
    store.close()


def conversations_on_disk(root: Path) -> dict[str, int]:
    """What a kill -9 now would leave behind, read beside the store's own connection."""
    db = sqlite3.connect(root / "bot.sqlite3")
    rows = dict(db.execute("SELECT key, state FROM conversations").fetchall())
    db.close()
    return rows


async def test_the_conversation_state_is_written_with_the_handled_mark(tmp_path: Path) -> None:
    """Before: the state was on disk before the handled mark, so a kill between the two
    replayed the update under its own new state (a style picture taken as a new photo)."""
    store = Store(tmp_path)
    processor = UpdateProcessor(store)
    persistence = StorePersistence(store)
    [update] = await lined_up(processor, text_update(61, 7))

    async def handle() -> None:  # what the conversation handler and bot.app's group 1 do
        await persistence.update_conversation(NAME, (7, 7), State.WAITING_STYLE_PICTURE)

    fault = break_store(store, DISK_FULL, match="UPDATE updates SET payload")
    task = asyncio.create_task(processor.process_update(update, handle()))
    await eventually(lambda: asyncio.sleep(0, fault.failures > 0), True)
    assert conversations_on_disk(tmp_path) == {}  # the handled mark failed: nor the state
    assert [update_id for update_id, _ in await store.unhandled()] == [61]
    fault.heal()
    await asyncio.wait_for(task, 10)
    assert conversations_on_disk(tmp_path) == {"[7, 7]": State.WAITING_STYLE_PICTURE}
    assert await store.unhandled() == []
    store.close()


# -- finding 7: no replay outlives its key ---------------------------------------------------


def test_a_journaled_update_is_replayed_only_while_its_job_key_lives() -> None:
    assert min(KEEP_KEYS_S, SUBMITTED_TTL_S) > REPLAY_WITHIN_S


def age(root: Path, update_id: int, seconds: float) -> None:
    db = sqlite3.connect(root / "bot.sqlite3")
    db.execute(
        "UPDATE updates SET received_at = received_at - ? WHERE update_id = ?",
        (seconds, update_id),
    )
    db.commit()
    db.close()


async def test_an_update_older_than_its_key_is_answered_not_replayed(
    telegram: FakeTelegram, start_bot: BotFactory, bot_env: dict[str, str]
) -> None:
    await journal_before_start(bot_env, photo_update(telegram, 811, 7301, seed=86))
    age(Path(bot_env["ORSAY_DATA_DIR"]) / "bot", 7301, REPLAY_WITHIN_S + 60)
    async with start_bot() as app:
        ann = telegram.user(811)
        await ann.wait_text("a while ago")
        await eventually(app.bot_data["services"].store.unhandled, [])
        await asyncio.sleep(0.3)  # would a menu follow?
    assert not ann.menus()


# -- finding 8: a poison update is set aside -------------------------------------------------


async def test_an_update_begun_at_three_starts_is_set_aside_with_an_apology(
    telegram: FakeTelegram,
    start_bot: BotFactory,
    bot_env: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three starts each begin the update and die in it (modelled: its handler never ends and
    the start is abandoned); the fourth apologises instead of running it again."""
    await journal_before_start(bot_env, photo_update(telegram, 812, 7401, seed=87))
    store = Store(Path(bot_env["ORSAY_DATA_DIR"]) / "bot")
    began: list[int] = []
    for n in range(MAX_STARTS):
        start = UpdateProcessor(store)
        assert await start.replay(None) == 1  # type: ignore[arg-type]
        update = start.inbox.get_nowait()
        assert isinstance(update, Update)

        async def poison() -> None:
            began.append(1)
            await asyncio.Event().wait()

        task = asyncio.create_task(start.process_update(update, poison()))
        await eventually(lambda: asyncio.sleep(0, len(began)), n + 1)
        task.cancel()  # the process died in it
        await asyncio.gather(task, return_exceptions=True)
    assert [row.attempts for row in await store.backlog()] == [MAX_STARTS]
    store.close()
    with caplog.at_level(logging.WARNING, logger="bot.updates"):
        async with start_bot() as app:
            ann = telegram.user(812)
            await ann.wait_text("could not handle")
            await eventually(app.bot_data["services"].store.unhandled, [])
            await asyncio.sleep(0.3)  # would the photo be handled after all?
    assert not ann.menus() and len(began) == MAX_STARTS
    assert any(r.getMessage() == "update.set_aside" for r in caplog.records)
