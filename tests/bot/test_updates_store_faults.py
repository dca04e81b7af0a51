"""The bot's store failing under the update processor (bot.updates), issue 30 finding 3: a
journal write that fails is retried while Telegram keeps the update (nothing escapes PTB's
polling loop, which would end for good), /healthz is red meanwhile, a handled mark or a
handler's write that fails is retried rather than lost, and past ORSAY_STORE_OUTAGE_S of
failure the bot stops with a non-zero exit status for its supervisor."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from telegram import Update

from bot.store import Store
from bot.updates import STORE_OUTAGE_EXIT, UpdateProcessor
from engine.observability.health import bound_port
from tests.bot.test_updates import text_update
from tests.doubles.bot_helpers import BotFactory, eventually, jpeg, stop_bot_process
from tests.doubles.broken_store import DISK_FULL, IO_ERROR, LOCKED, break_store
from tests.doubles.fake_telegram import FakeTelegram
from tests.doubles.link import INSTANT, SLOW_LINK

REPO = Path(__file__).resolve().parents[2]


async def test_a_journal_write_that_fails_is_retried_until_it_is_on_disk(tmp_path: Path) -> None:
    """Before: the OperationalError left `put`, so PTB's polling loop ended there."""
    store = Store(tmp_path)
    processor = UpdateProcessor(store)
    fault = break_store(store, DISK_FULL, calls=3)
    await asyncio.wait_for(processor.inbox.put(text_update(31, 8)), 10)
    assert fault.failures == 3
    assert processor.inbox.qsize() == 1
    assert [update_id for update_id, _ in await store.unhandled()] == [31]
    assert (await processor.health())["ok"] is True  # healed: green again
    store.close()


async def test_a_handled_mark_that_fails_is_retried_and_the_handler_goes_on(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path)
    processor = UpdateProcessor(store)
    await processor.inbox.put(text_update(32, 8))
    update = processor.inbox.get_nowait()
    assert isinstance(update, Update)
    fault = break_store(store, IO_ERROR, calls=2, match="UPDATE updates SET payload")
    await asyncio.wait_for(processor.process_update(update, asyncio.sleep(0)), 10)
    assert fault.failures == 2
    assert await store.unhandled() == []
    store.close()


async def test_past_the_outage_bound_the_processor_asks_to_stop_and_confirms_nothing(
    tmp_path: Path,
) -> None:
    """The write is still retried (the update is not confirmed to Telegram, which keeps it),
    /healthz is red, and the application is asked to stop with a non-zero exit status."""
    store = Store(tmp_path)
    processor = UpdateProcessor(store, outage_s=0.3)
    stops: list[int] = []
    processor.on_outage = lambda: stops.append(1)
    fault = break_store(store, LOCKED)
    put = asyncio.create_task(processor.inbox.put(text_update(33, 8)))
    await eventually(lambda: asyncio.sleep(0, stops), [1])
    assert not put.done() and processor.inbox.empty()
    assert processor.exit_code == STORE_OUTAGE_EXIT
    health = await processor.health()
    assert health["ok"] is False and "store" in health["updates"]
    fault.heal()
    await asyncio.wait_for(put, 10)
    assert processor.inbox.qsize() == 1 and stops == [1]
    store.close()


async def healthz(port: int) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient() as client:
        answer = await client.get(f"http://127.0.0.1:{port}/healthz")
    return answer.status_code, answer.json()


@pytest.mark.parametrize("link", [INSTANT, SLOW_LINK], indirect=True, ids=["instant", "slow"])
async def test_polling_goes_on_after_the_store_heals_and_healthz_is_red_meanwhile(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    async with start_bot(ORSAY_METRICS_PORT="0") as app:
        svc = app.bot_data["services"]
        port = bound_port(svc.health)
        ann = telegram.user(901)
        ann.photo(jpeg(seed=90))
        await ann.wait_menu()
        assert (await healthz(port))[0] == 200
        fault = break_store(svc.store, DISK_FULL)
        ann.text("/help")
        await telegram.wait_for(lambda: fault.failures >= 2)
        status, details = await healthz(port)
        assert status == 503 and "store" in details["updates"], details
        assert telegram._updates  # not confirmed: Telegram still holds the /help
        fault.heal()
        await ann.wait_text("How it works")
        ann.photo(jpeg(seed=91))  # and polling goes on
        await ann.wait_menu(after=1)
        assert (await healthz(port))[0] == 200


async def test_a_handler_whose_write_fails_runs_again_once_the_store_is_back(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    """A settings toggle whose write fails (the store's disk full for two tries) is not lost:
    the update is handled again, and the user sees the toggle."""
    async with start_bot() as app:
        svc = app.bot_data["services"]
        ann = telegram.user(902)
        ann.text("/settings")
        menu = await ann.wait_text("Settings")
        fault = break_store(svc.store, DISK_FULL, calls=2, match="INSERT OR IGNORE INTO users")
        ann.press(menu, "set:f")
        await telegram.wait_for(lambda: telegram.calls_to("editMessageReplyMarkup", 902))
        assert fault.failures == 2
        assert (await svc.store.user(902)).as_file
        await eventually(svc.store.unhandled, [])


@pytest.mark.slow
async def test_a_bot_whose_store_stays_locked_exits_for_its_supervisor(
    telegram: FakeTelegram, bot_env: dict[str, str], tmp_path: Path
) -> None:
    """A real process and a real fault: another connection holds the store's write lock, so
    each write of the bot fails after its 5 s busy timeout. Past ORSAY_STORE_OUTAGE_S the bot
    exits with STORE_OUTAGE_EXIT; the update it could not write is still Telegram's, and the
    next start (lock gone) answers it."""
    env = {
        **os.environ,
        **bot_env,
        "ORSAY_PAINTER": "stub",
        "PYTHONPATH": str(REPO),
        "ORSAY_STORE_OUTAGE_S": "1",
    }
    log = (tmp_path / "bot.log").open("ab")
    spawn = [sys.executable, "-m", "orsay", "bot"]
    proc = subprocess.Popen(spawn, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    ann = telegram.user(903)
    lock: sqlite3.Connection | None = None
    try:
        ann.text("/start")
        await ann.wait_text("Hi!", timeout=30)
        db = Path(bot_env["ORSAY_DATA_DIR"]) / "bot" / "bot.sqlite3"
        lock = sqlite3.connect(db, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        ann.text("/help")
        code = await asyncio.to_thread(proc.wait, 60)
        assert code == STORE_OUTAGE_EXIT
        assert telegram._updates  # the /help was never confirmed
        lock.execute("ROLLBACK")
        lock.close()
        lock = None
        proc = subprocess.Popen(spawn, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        await ann.wait_text("How it works", timeout=30)
    finally:
        if lock is not None:
            lock.close()
        await stop_bot_process(proc)
