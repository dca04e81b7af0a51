"""One journey with the real engine (random VGG19 weights, tiny size): the bot's options reach the
painter, and its progress, preview and result reach the chat."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doubles.bot_helpers import BotFactory
from tests.doubles.fake_telegram import FakeTelegram


@pytest.mark.slow
async def test_real_engine_journey(
    telegram: FakeTelegram, start_bot: BotFactory, test_data: Path, random_weights: Path
) -> None:
    from engine.queue.engine_painter import make_engine_painter

    painter = make_engine_painter(
        "vgg19", str(random_weights), "cpu", max_size=64, gallery=test_data / "artworks"
    )
    async with start_bot(painter=painter, ORSAY_MAX_SIZE="64"):
        ann = telegram.user(401)
        ann.document((test_data / "photos" / "chelsea-the-cat.png").read_bytes(), "cat.png")
        ann.press(await ann.wait_menu(), "st:van-gogh-starry-night")
        [result] = await ann.wait_result(timeout=120)
        assert max(result.image_size()) == 64  # the operator's cap, aspect kept
        assert "Starry Night" in (result.caption or "")
        previews = [m for m in ann.messages("photo") if not m.caption]
        assert previews and previews[0].message_id < result.message_id  # a preview came first
