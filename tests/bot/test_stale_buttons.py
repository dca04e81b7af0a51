"""A settings button with a name the presets do not know (an older bot's, or a forged one)
changes nothing: engine.presets raises on an unknown quality or strength, so a stored one would
make every later job of that user fail."""

from __future__ import annotations

from tests.doubles.bot_helpers import BotFactory, jpeg
from tests.doubles.fake_telegram import FakeTelegram


async def test_an_unknown_quality_or_strength_changes_nothing(
    telegram: FakeTelegram, start_bot: BotFactory
) -> None:
    async with start_bot() as app:
        ann = telegram.user(61)
        ann.text("/settings")
        panel = await ann.wait_text("Settings — tap to change.")
        ann.press(panel, "set:s:extreme")
        ann.press(panel, "set:q:ultra")
        ann.press(panel, "set:q:fast")  # a known name still works
        await telegram.wait_for(lambda: "• fast" in [t for t, _ in panel.buttons()])
        ann.photo(jpeg(120, 60, seed=3))
        menu = await ann.wait_text("Which painting")
        ann.press(menu, "st:munch-the-scream")
        [result] = await ann.wait_result()
        assert result.image_size() == (256, 128)  # painted, at the fast size
        prefs = await app.bot_data["services"].store.user(61)
        assert (prefs.quality, prefs.strength) == ("fast", "medium")
