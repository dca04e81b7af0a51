"""The bot's stop is bounded by one deadline, ORSAY_STOP_S from SIGTERM to exit (issue 30,
finding 4): a delivery ends even when Python 3.11 swallows its cancel, an upload Telegram does
not answer is cut at the deadline (and sent again at the next start, as the policy says), and a
stop the event loop cannot finish (a hung call) still exits, by the watchdog."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from telegram.error import RetryAfter

from bot.app import STOP_OVERRAN_EXIT
from bot.follow import Follower
from bot.pacing import ForegroundFirstLimiter, StopCut, StopDeadline
from bot.store import Store
from engine.queue import JobEvent, JobRecord, JobRequest, JobState
from tests.doubles.bot_helpers import BotFactory, jpeg
from tests.doubles.fake_telegram import FakeTelegram
from tests.doubles.link import SLOW_LINK
from tests.doubles.painters import SizedPainter

REPO = Path(__file__).resolve().parents[2]


class SilentBot:
    """Records every call; the test's deliveries must not make any."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        async def method(*args: Any, **kwargs: Any) -> None:
            self.calls.append(name)

        return method


class GatedQueue:
    """One running job whose progress events come when the test opens `gate`, and never end."""

    def __init__(self) -> None:
        self.job = JobRecord("j1", JobRequest(1, 1, b"", []), JobState.RUNNING, time.time())
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()  # the stream waits at the gate

    async def get(self, job_id: str) -> JobRecord | None:
        return self.job

    async def events(self, job_id: str) -> AsyncIterator[JobEvent]:
        yield JobEvent(job_id, "started")
        while True:
            self.waiting.set()
            await self.gate.wait()
            self.gate.clear()
            yield JobEvent(job_id, "progress", fraction=0.5)

    async def acknowledge(self, job_id: str) -> None:
        pass

    async def healthy(self) -> bool:
        return True


async def test_a_delivery_whose_cancel_python_swallowed_still_ends(tmp_path: Path) -> None:
    """Python 3.11's wait_for returns an event that arrived in the loop iteration of the cancel
    and drops the cancel. Here the event is queued one iteration before close() cancels, so the
    race is hit every time. Before: the delivery went on following its job (minutes for a
    print) and close() waited for it: still running after 5 s."""
    bot, queue, store = SilentBot(), GatedQueue(), Store(tmp_path)
    follower = Follower(bot, queue, store)  # type: ignore[arg-type]
    follower.quiet_s = 3600.0  # nothing is shown: the test is about the task's end
    follower.follow("j1")
    await asyncio.wait_for(queue.waiting.wait(), 5)
    await asyncio.sleep(0.05)  # the delivery waits on its inbox (wait_for)
    queue.gate.set()
    await asyncio.sleep(0)  # the stream puts the event in the inbox: the get completes next …
    closing = asyncio.create_task(follower.close())  # … in the iteration the cancel arrives
    done, _ = await asyncio.wait({closing}, timeout=5)
    assert closing in done and not follower.tasks
    assert bot.calls == []
    store.close()


async def test_an_upload_telegram_never_answers_is_cut_at_the_stop_deadline(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    """The result is kept by Telegram and answered only after 30 s. Before: the stop waited for
    the upload however long (PTB's 5 s read timeout, then the retries), past ORSAY_STOP_S. Now
    it is cut at the deadline; nothing told the bot that Telegram had it, so the next start
    sends it again: the one duplicate the policy accepts (an upload longer than the stop)."""
    stop_s = 3.0
    ann = telegram.user(81)
    async with start_bot(painter=SizedPainter(steps=1, scales=1), ORSAY_STOP_S=str(stop_s)):
        ann.photo(jpeg(seed=81))
        menu = await ann.wait_menu()
        telegram.late("sendPhoto", 30.0, times=1, chat_id=81)
        ann.press(menu, "st:klimt-the-kiss")
        await ann.wait_result()  # Telegram has it; the bot waits for the answer
        stopping = time.monotonic()
    took = time.monotonic() - stopping
    assert took < stop_s + 1.0, f"the stop took {took:.1f} s"
    async with start_bot(painter=SizedPainter(steps=1, scales=1)) as app:
        await ann.wait_result(count=2)
        follower = app.bot_data["services"].follower
        await telegram.wait_for(lambda: not follower.tasks)
        assert await app.bot_data["services"].queue.undelivered() == []
    assert len([m for m in ann.messages("photo") if m.caption]) == 2


async def test_a_calls_tries_and_flood_waits_end_together_at_the_cut_off() -> None:
    """One bound for the whole call: a flood wait of 30 s that began before the stop, and the
    tries after it, end at the cut-off (2 s - 0.4 s reserve), not after it."""
    deadline = StopDeadline(2.0)
    limiter = ForegroundFirstLimiter(rate=0, deadline=deadline)
    tries = 0

    async def flooded() -> bool:
        nonlocal tries
        tries += 1
        raise RetryAfter(30)

    call = asyncio.create_task(
        limiter.process_request(flooded, (), {}, "sendPhoto", {"chat_id": 1}, True)
    )
    await asyncio.sleep(0.1)  # the first try failed; the call waits out the flood
    deadline.begin()
    with pytest.raises(StopCut):
        await asyncio.wait_for(call, 5)
    assert tries == 1 and deadline.left() > 0
    await limiter.shutdown()


@pytest.mark.parametrize("link", [SLOW_LINK], indirect=True, ids=["slow"])
async def test_the_stop_leaves_the_backlog_for_the_next_start(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    """Twelve photos of one user are fetched at once and run one after another (0.4 s each on
    the slow link). Before: the stop worked through the whole backlog, twelve menus before it
    ended. Now what has not started stays in the journal, and the next start answers it: every
    photo answered once."""
    ann = telegram.user(83)
    async with start_bot():
        for seed in range(12):
            ann.photo(jpeg(seed=830 + seed))
        await ann.wait_menu(timeout=15)
    assert len(ann.menus()) <= 2  # the one that had started may finish
    async with start_bot():
        await ann.wait_menu(after=11, timeout=30)
    assert len(ann.menus()) == 12


def hung_stop() -> SizedPainter:
    """ORSAY_PAINTER for the subprocess below: a painter, and a stop that blocks the event loop
    (a stand-in for a call that hangs in native code), which only the watchdog can end."""
    import bot.follow

    async def close(self: Follower) -> None:
        time.sleep(3600)

    bot.follow.Follower.close = close  # type: ignore[method-assign]
    return SizedPainter()


async def test_a_stop_that_hangs_exits_at_the_deadline(
    telegram: FakeTelegram, bot_env: dict[str, str], tmp_path: Path
) -> None:
    """Before: no watchdog, so a hung stop ran until the supervisor's SIGKILL (here: still
    running 10 s after SIGTERM). Now the process exits at ORSAY_STOP_S, non-zero."""
    env = {
        **os.environ,
        **bot_env,
        "ORSAY_PAINTER": "tests.bot.test_stop_bound:hung_stop",
        "ORSAY_STOP_S": "2",
        "PYTHONPATH": str(REPO),
    }
    log = tmp_path / "bot.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "orsay", "bot"],
        cwd=REPO,
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        ann = telegram.user(82)
        ann.text("/start")
        await ann.wait_text("I repaint your photos", timeout=30)
        proc.send_signal(signal.SIGTERM)
        stopping = time.monotonic()
        code = await asyncio.to_thread(proc.wait, 10)
        took = time.monotonic() - stopping
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert code == STOP_OVERRAN_EXIT, log.read_text()[-2000:]
    assert took < 2.0 + 1.5, f"exited {took:.1f} s after SIGTERM"
    assert "stop deadline" in log.read_text()
