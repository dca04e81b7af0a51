"""The small pieces (the translations are in test_texts.py): callback data within Telegram's
limit, the store's persistence, Telegram error handling, and health/metrics and queue-down
answers in a live bot."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter

from bot import keyboards, tg
from bot.conversation import NAME, State
from bot.job_texts import bar, duration
from bot.pacing import ATTEMPTS, ForegroundFirstLimiter
from bot.store import JobMessages, Store
from engine.queue import QueueUnavailable
from tests.doubles.bot_helpers import BotFactory, jpeg
from tests.doubles.fake_telegram import FakeTelegram


def test_callback_data_fits_in_64_bytes() -> None:
    class P:
        def __init__(self, slug: str) -> None:
            self.slug, self.title, self.artist = slug, slug.title(), "Someone"

    paintings = [P(f"painting-{i}") for i in range(13)] + [P("a-very-long-slug-" * 5)]
    for page in range(3):
        markup = keyboards.styles("en", paintings, page)
        for row in markup.inline_keyboard:
            for button in row:
                assert button.callback_data and len(str(button.callback_data).encode()) <= 64
    long_data = keyboards.style_data(paintings[-1].slug)
    assert long_data.startswith("sh:")
    assert keyboards.slug_matches("sh", long_data[3:], paintings[-1].slug)
    assert len(keyboards.cancel("ru", "f" * 32).inline_keyboard[0][0].callback_data or "") <= 64
    with pytest.raises(ValueError, match="64 bytes"):
        keyboards.data("x", "y" * 70)


async def test_store_survives_reopening(tmp_path: Path) -> None:
    store = Store(tmp_path)
    await store.update(7, lang="ru", quality="high", keep_colors=True)
    # "next image is the style"
    await store.set_conversation(NAME, (7, 7), State.WAITING_STYLE_PICTURE)
    await store.save_image(7, "photo", b"jpeg-bytes")
    await store.set_job_messages("job1", 7, JobMessages(status_msg=10, preview_msg=11))
    store.close()
    again = Store(tmp_path)
    prefs = await again.user(7)
    assert (prefs.lang, prefs.quality, prefs.keep_colors) == ("ru", "high", True)
    assert await again.conversations(NAME) == {(7, 7): State.WAITING_STYLE_PICTURE}
    assert await again.image(7, "photo") == b"jpeg-bytes"
    assert await again.job_messages("job1") == JobMessages(10, 11, False)
    await again.forget(7)
    assert (await again.user(7)).lang is None and await again.image(7, "photo") is None
    assert await again.job_messages("job1") == JobMessages()
    assert await again.conversations(NAME) == {}
    again.close()


def test_progress_formatting() -> None:
    assert bar(0.0) == "░" * 10 and bar(0.5) == "▓" * 5 + "░" * 5 and bar(1.2) == "▓" * 10
    assert duration(None) == "…" and duration(42) == "42 s" and duration(125) == "2:05"


async def test_telegram_call_retries_and_classifies() -> None:
    """Retries are the limiter's (bot.pacing, the one policy); tg.call only classifies."""
    limiter = ForegroundFirstLimiter(rate=0, backoff_s=0.01)
    attempts: list[int] = []

    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise RetryAfter(0)
        if len(attempts) == 2:
            raise NetworkError("Bad Gateway")
        return "ok"

    async def through_limiter(make: Callable[[], Awaitable[Any]]) -> Any:
        return await limiter.process_request(make, (), {}, "sendMessage", {"chat_id": 1}, None)

    assert await tg.call(lambda: through_limiter(flaky)) == "ok" and len(attempts) == 3

    async def not_modified() -> None:
        raise BadRequest("Message is not modified: specified new message content …")

    assert await tg.call(not_modified) is None

    async def blocked() -> None:
        raise Forbidden("Forbidden: bot was blocked by the user")

    with pytest.raises(tg.Blocked):
        await tg.call(blocked)

    async def down() -> None:
        attempts.append(1)
        raise NetworkError("Internal Server Error")

    attempts.clear()
    with pytest.raises(NetworkError):
        await tg.call(lambda: through_limiter(down))
    assert len(attempts) == ATTEMPTS  # the bound: one try and ATTEMPTS - 1 retries, no more
    await limiter.shutdown()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_health_endpoint_and_queue_unavailable(
    telegram: FakeTelegram, start_bot: BotFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = _free_port()
    async with start_bot(ORSAY_METRICS_PORT=str(port)) as app:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{port}/healthz") as r:
                assert r.status == 200 and (await r.json())["ok"] is True
            async with http.get(f"http://127.0.0.1:{port}/metrics") as r:
                assert "orsay_telegram_errors_total" in await r.text()
        queue = app.bot_data["services"].queue

        async def unavailable(request: object, **kwargs: object) -> tuple[str, int]:
            raise QueueUnavailable("redis is restarting")

        monkeypatch.setattr(queue, "submit", unavailable)
        ann = telegram.user(501)
        ann.photo(jpeg(seed=40))
        ann.press(await ann.wait_menu(), "rnd")
        await ann.wait_text("temporarily unavailable")


async def test_pacing_puts_user_replies_before_background_deliveries() -> None:
    limiter = ForegroundFirstLimiter(rate=20)
    order: list[str] = []

    async def send(name: str) -> bool:
        order.append(name)
        return True

    async def request(name: str, background: bool) -> None:
        data = {"chat_id": 1}
        await limiter.process_request(send, (name,), {}, "sendMessage", data, background)

    started = time.monotonic()
    jobs = [asyncio.create_task(request(f"bg{i}", True)) for i in range(30)]
    await asyncio.sleep(0.01)  # the burst allowance (20) is spent on background sends
    jobs.append(asyncio.create_task(request("reply", False)))
    await asyncio.gather(*jobs)
    assert order.index("reply") == 20  # first in line as soon as a token is free
    assert 0.45 < time.monotonic() - started < 1.5  # 11 sends past the burst at 20/s

    calls = 0

    async def flooded() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RetryAfter(1)
        return True

    t0 = time.monotonic()
    assert await limiter.process_request(flooded, (), {}, "sendMessage", {"chat_id": 1}, None)
    assert calls == 2 and time.monotonic() - t0 >= 1.0  # waited out retry_after
    await limiter.shutdown()
