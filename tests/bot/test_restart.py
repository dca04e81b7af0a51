"""Durability seen from the chat: buttons and jobs survive a restart of the bot, whether it stops
cleanly or is killed (SIGKILL of a real `orsay bot` process), and each result arrives once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.doubles.bot_helpers import BotFactory, jpeg, stop_bot_process
from tests.doubles.fake_telegram import TOKEN, FakeTelegram
from tests.doubles.painters import SizedPainter

REPO = Path(__file__).resolve().parents[2]


async def test_buttons_work_after_a_restart(telegram: FakeTelegram, start_bot: BotFactory) -> None:
    ann = telegram.user(201)
    async with start_bot():
        ann.photo(jpeg(seed=30))
        menu = await ann.wait_menu()
    async with start_bot():  # a new process would see only the data dir
        ann.press(menu, "st:hokusai-great-wave-off-kanagawa")
        [result] = await ann.wait_result()
        assert "Great Wave" in (result.caption or "")
        ann.press(result, result.button("Another style"))
        await ann.wait_menu(after=1)


async def test_clean_restart_mid_job_delivers_once(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    ann = telegram.user(202)
    async with start_bot(painter=SizedPainter(steps=20, step_s=0.1)) as app:
        ann.photo(jpeg(seed=31))
        ann.press(await ann.wait_menu(), "st:klimt-the-kiss")
        status = await ann.wait_text("🎨")
        queue = app.bot_data["services"].queue
    # stopped mid-job: the painter was interrupted and the job went back in line
    assert not ann.messages("photo") or all(not m.caption for m in ann.messages("photo"))
    async with start_bot(painter=SizedPainter(steps=2, step_s=0.01)) as app:
        [result] = await ann.wait_result()
        assert "Kiss" in (result.caption or "")
        await telegram.wait_for(lambda: status.deleted)  # the old status message was resumed
        queue = app.bot_data["services"].queue
        await telegram.wait_for(lambda: not app.bot_data["services"].follower.tasks)
        assert await queue.undelivered() == []
    assert len([m for m in ann.messages("photo") if m.caption]) == 1


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "orsay", "bot"],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


@pytest.mark.slow
async def test_killed_bot_process_delivers_once_after_restart(
    telegram: FakeTelegram, bot_env: dict[str, str], tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **bot_env,
        "ORSAY_PAINTER": "tests.doubles.painters:slow",
        "PYTHONPATH": str(REPO),
        "ORSAY_LOG_LEVEL": "DEBUG",
        "ORSAY_TELEGRAM_RATE": "30",  # the production pace (bot.pacing), not the tests' "off"
    }
    log = tmp_path / "bot.log"
    ann = telegram.user(203)
    proc = _spawn(env, log)
    try:
        ann.photo(jpeg(seed=32))
        ann.press(await ann.wait_menu(timeout=30), "st:monet-impression-sunrise")
        await ann.wait_text("🎨", timeout=15)
        proc.send_signal(signal.SIGKILL)  # mid-job, no goodbye
        await asyncio.to_thread(proc.wait, 10)
        assert not any(m.caption for m in ann.messages("photo"))
        proc = _spawn(env, log)
        [result] = await ann.wait_result(timeout=40)
        assert "Impression" in (result.caption or "")
        await asyncio.sleep(1.0)  # would a duplicate follow?
        assert len([m for m in ann.messages("photo") if m.caption]) == 1
    finally:
        await stop_bot_process(proc)
    text = log.read_text()
    assert "bot started" in text  # the log is real, and…
    assert TOKEN not in text and TOKEN.split(":")[1] not in text  # …never holds the token
