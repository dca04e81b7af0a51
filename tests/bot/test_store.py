"""The bot's store across versions: a store written by the first release (no schema version)
opens with today's code, keeps everything in it and gains what is new; a new store and an
upgraded one are alike; a store from a newer Orsay is refused, not misread."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

import bot.app
import bot.store
from bot.conversation import NAME, State
from bot.schema import VERSION, NewerStore
from bot.store import KEEP_HANDLED_S, JobMessages, Store
from tests.doubles.bot_helpers import BotFactory, eventually, jpeg
from tests.doubles.clock import Clock
from tests.doubles.fake_telegram import FakeTelegram

V0 = Path(__file__).parent / "data" / "store_v0.sql"


def first_release_store(root: Path) -> Path:
    """`root` as the first release left it: the dump's database and a user's waiting photo."""
    db = sqlite3.connect(root / "bot.sqlite3")
    db.executescript(V0.read_text())
    db.close()
    (root / "users" / "7").mkdir(parents=True)
    (root / "users" / "7" / "photo").write_bytes(b"jpeg-bytes")
    return root / "bot.sqlite3"


def columns(path: Path) -> dict[str, list[tuple[str, str, int, object]]]:
    """Every table's columns (name, type, not null, default), for comparing schemas."""
    db = sqlite3.connect(path)
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    shape = {
        table: [tuple(col[1:5]) for col in db.execute(f"PRAGMA table_info({table})")]
        for table in sorted(tables)
    }
    db.close()
    return shape  # type: ignore[return-value]


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    version = int(db.execute("PRAGMA user_version").fetchone()[0])
    db.close()
    return version


async def test_a_first_release_store_is_upgraded_with_everything_kept(tmp_path: Path) -> None:
    path = first_release_store(tmp_path)
    assert user_version(path) == 0
    store = Store(tmp_path)
    ann, bob, cy = await store.user(7), await store.user(8), await store.user(9)
    assert (ann.lang, ann.quality, ann.keep_colors, ann.last_style) == (
        "ru",
        "high",
        True,
        "klimt-the-kiss",
    )
    assert (bob.strength, bob.as_file, bob.last_style) == ("strong", True, "own")
    assert (cy.lang, cy.quality) == (None, "balanced")
    assert await store.job_messages("5f0c3a1e9b2d4c6a8e7f1b3d5c7a9e0f") == JobMessages(1001, 1002)
    assert await store.job_messages("a1b2c3d4e5f60718293a4b5c6d7e8f90") == JobMessages(
        1010, None, True
    )
    assert await store.conversations(NAME) == {
        (7, 7): State.WAITING_STYLE_PICTURE,
        (8, 8): State.CHOOSING_STYLE,
    }
    assert await store.image(7, "photo") == b"jpeg-bytes"
    # what is new works on the upgraded store: the write-ahead, changes made once per press
    assert await store.journal(41, '{"update_id": 41}') and await store.unhandled() == [
        (41, '{"update_id": 41}')
    ]
    await store.update(8, once="cq-1", as_file=False)
    assert not (await store.update(8, once="cq-1", as_file=True)).as_file  # replayed: not again
    store.close()
    assert user_version(path) == VERSION
    reopened = Store(tmp_path)  # opening again migrates nothing and loses nothing
    assert (await reopened.user(7)).lang == "ru" and await reopened.unhandled() != []
    assert [(row.update_id, row.attempts) for row in await reopened.backlog()] == [(41, 0)]
    reopened.close()


async def test_a_new_store_and_an_upgraded_one_have_the_same_tables(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    upgraded = first_release_store(tmp_path / "old")
    Store(tmp_path / "old").close()
    Store(tmp_path / "new").close()
    assert columns(upgraded) == columns(tmp_path / "new" / "bot.sqlite3")


def test_a_store_from_a_newer_orsay_is_refused(tmp_path: Path) -> None:
    Store(tmp_path).close()
    db = sqlite3.connect(tmp_path / "bot.sqlite3")
    db.execute(f"PRAGMA user_version = {VERSION + 1}")
    db.close()
    with pytest.raises(NewerStore, match="newer Orsay"):
        Store(tmp_path)


async def test_a_delivered_jobs_sent_mark_is_kept_for_replays(tmp_path: Path) -> None:
    """After delivery the job's row stays with its sent mark: a replayed press that finds its
    job (delivered meanwhile) must send nothing."""
    store = Store(tmp_path)
    await store.set_job_messages("j1", 7, JobMessages(status_msg=5, sent=True))
    await store.finish_job("j1")
    assert (await store.job_messages("j1")).sent
    await store.drop_job("j1")  # the queue forgot the job: nothing left to remember
    assert await store.job_messages("j1") == JobMessages()
    store.close()


# -- pruning while the bot runs (issue 30, finding 6) -----------------------------------------


def rows(root: Path, sql: str) -> list[tuple[Any, ...]]:
    """What the store's file holds now, read through a connection of the test's own."""
    db = sqlite3.connect(root / "bot.sqlite3")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


async def test_prune_forgets_only_what_is_past_its_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(bot.store, "time", clock)
    store = Store(tmp_path)
    await store.journal(1, "{}")
    await store.handled(1)
    await store.journal(2, '{"waits": 1}')  # never handled: replayed at the next start
    await store.set_job_messages("delivered", 7, JobMessages(10, None, True))
    await store.finish_job("delivered")
    await store.set_job_messages("painting", 7, JobMessages(11, None, False))
    clock.offset = KEEP_HANDLED_S - 60
    await store.journal(3, "{}")
    await store.handled(3)
    assert await store.prune() == 0  # nothing is old enough yet
    clock.offset = KEEP_HANDLED_S + 60
    assert await store.prune() == 2  # update 1, the delivered job's row
    assert rows(tmp_path, "SELECT update_id FROM updates ORDER BY 1") == [(2,), (3,)]
    assert await store.unhandled() == [(2, '{"waits": 1}')]
    assert not await store.journal(3, "{}")  # a recent id is still recognised
    assert rows(tmp_path, "SELECT job_id FROM job_messages") == [("painting",)]
    store.close()


async def test_a_running_bot_prunes_its_store(
    telegram: FakeTelegram,
    start_bot: BotFactory,
    bot_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows past their age go while the bot runs, not only when it starts: the prune's period
    is cut to 0.1 s and the store's clock moved two days on, nothing sleeps for days."""
    clock = Clock()
    monkeypatch.setattr(bot.store, "time", clock)
    monkeypatch.setattr(bot.app, "PRUNE_EVERY_S", 0.1)
    root = Path(bot_env["ORSAY_DATA_DIR"]) / "bot"
    async with start_bot() as app:
        store = app.bot_data["services"].store
        ann = telegram.user(301)
        ann.photo(jpeg(seed=301))
        ann.press(await ann.wait_menu(), "st:klimt-the-kiss")
        await ann.wait_result()
        await eventually(lambda: _count(root, "job_messages WHERE finished_at IS NOT NULL"), 1)
        await eventually(store.unhandled, [])
        assert await _count(root, "updates") == 2
        clock.offset = KEEP_HANDLED_S + 60
        await eventually(lambda: _count(root, "updates"), 0)
        await eventually(lambda: _count(root, "job_messages"), 0)


async def _count(root: Path, table: str) -> int:
    return int(rows(root, f"SELECT COUNT(*) FROM {table}")[0][0])
