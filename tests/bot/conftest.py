"""Fixtures for the bot's end-to-end tests: a fake Bot API server, settings pointing at it, and
the real application (build_application + PTB polling over HTTP) with a fast stub painter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_application, running
from bot.config import Settings, load_settings
from engine.queue import JobQueue, Painter
from tests.doubles.bot_helpers import BotFactory
from tests.doubles.fake_telegram import TOKEN, FakeTelegram
from tests.doubles.link import INSTANT, Link
from tests.doubles.painters import SizedPainter


@pytest.fixture
def link(request: pytest.FixtureRequest) -> Link:
    """The fake Telegram's timing: instant, unless a test parametrizes `link` indirectly with
    the profiles of tests/doubles/link.py (`@pytest.mark.parametrize("link", PROFILES,
    indirect=True, ids=...)`)."""
    return getattr(request, "param", INSTANT)


@pytest.fixture
async def telegram(link: Link) -> AsyncIterator[FakeTelegram]:
    server = FakeTelegram(link=link)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def bot_env(tmp_path: Path, telegram: FakeTelegram, test_data: Path) -> dict[str, str]:
    """The bot's settings as variables: `start_bot` builds its Settings from exactly these, and
    subprocess tests add them to the environment."""
    return {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "ORSAY_BOT_API_URL": telegram.url,
        "ORSAY_DATA_DIR": str(tmp_path / "data"),
        "ORSAY_GALLERY_DIR": str(test_data / "artworks"),
        "ORSAY_ADMINS": "1",
        "ORSAY_TELEGRAM_RATE": "0",
        "ORSAY_SHUTDOWN_GRACE": "0.2",
    }


@pytest.fixture
def start_bot(bot_env: dict[str, str]) -> BotFactory:
    """`async with start_bot(painter=..., queue=..., **env) as app:` runs the real bot."""

    @asynccontextmanager
    async def start(
        painter: Painter | None = None, queue: JobQueue | None = None, **env: str
    ) -> AsyncIterator[Any]:
        settings: Settings = load_settings({**bot_env, **env})
        app = build_application(
            settings, queue=queue, painter=painter if painter or queue else SizedPainter()
        )
        async with running(app):
            yield app

    return start
