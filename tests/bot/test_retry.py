"""The one retry policy for Telegram calls (bot.pacing): a 429 costs a bounded, exact number of
sends, through the real bot and the fake Bot API, and calls that cannot succeed are not retried."""

from __future__ import annotations

import asyncio
import itertools
import time

import pytest
from telegram.error import BadRequest, NetworkError, RetryAfter

from bot.pacing import ATTEMPTS, MAX_RETRY_AFTER_S, ForegroundFirstLimiter
from tests.doubles.bot_helpers import BotFactory, jpeg
from tests.doubles.fake_telegram import FakeTelegram
from tests.doubles.painters import SizedPainter


async def test_one_429_on_the_result_costs_exactly_one_more_send(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    async with start_bot(painter=SizedPainter(steps=1, scales=1)):  # fast: no preview, no status
        ann = telegram.user(601)
        ann.photo(jpeg(seed=60))
        menu = await ann.wait_menu()
        telegram.fault("sendPhoto", 429, times=1, retry_after=1, chat_id=601)
        started = time.monotonic()
        ann.press(menu, "st:klimt-the-kiss")
        [result] = await ann.wait_result()
        assert time.monotonic() - started >= 1.0  # retry_after was waited out
        await asyncio.sleep(0.5)  # would any layer send again?
        sends = telegram.calls_to("sendPhoto", 601)
        assert [c.status for c in sends] == [429, 200]  # 2 sends, not the old 3 × 5 × 3
        assert "Kiss" in (result.caption or "")


@pytest.mark.slow
async def test_telegram_refusing_with_429_gets_exactly_attempts_sends(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    async with start_bot():
        ann = telegram.user(602)
        telegram.fault("sendMessage", 429, times=100, retry_after=1, chat_id=602)
        ann.text("/start")
        await telegram.wait_for(
            lambda: len(telegram.calls_to("sendMessage", 602)) >= ATTEMPTS,
            timeout=ATTEMPTS * 1.5,
        )
        await asyncio.sleep(1.5)  # past another retry_after: nothing more comes
        sends = telegram.calls_to("sendMessage", 602)
        assert len(sends) == ATTEMPTS == 5 and all(c.status == 429 for c in sends)
        waits = [b.at - a.at for a, b in itertools.pairwise(sends)]
        assert min(waits) >= 1.0  # every retry honoured retry_after


async def test_what_retrying_cannot_fix_is_tried_once() -> None:
    limiter = ForegroundFirstLimiter(rate=0, backoff_s=0.01)
    tries: list[str] = []

    async def failing(exc: Exception) -> bool:
        tries.append(type(exc).__name__)
        raise exc

    for exc in (
        BadRequest("Bad Request: chat not found"),
        RetryAfter(int(MAX_RETRY_AFTER_S) + 1),  # a flood wait too long to sit out
    ):
        tries.clear()
        with pytest.raises(type(exc)):
            await limiter.process_request(failing, (exc,), {}, "sendMessage", {"chat_id": 1}, None)
        assert len(tries) == 1

    tries.clear()
    with pytest.raises(NetworkError):  # a 5xx: backed off and retried, up to the bound
        await limiter.process_request(
            failing, (NetworkError("Bad Gateway"),), {}, "answerCallbackQuery", {}, None
        )
    assert len(tries) == ATTEMPTS
    await limiter.shutdown()
