"""A stand-in for a module's `time`, moved on by hand: stores whose rows age by days (the bot's
store, the queues' records and keys) are tested without waiting. Patch it over the module's
`time` (`monkeypatch.setattr(bot.store, "time", clock)`); every other attribute is `time`'s."""

from __future__ import annotations

import time
from typing import Any


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0  # seconds added to the wall clock

    def time(self) -> float:
        return time.time() + self.offset

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)
