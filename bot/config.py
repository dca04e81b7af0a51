"""What the bot needs from the settings beyond the engine's: a Telegram token.

The settings themselves (every variable, `.env`, validation) are engine.settings; this module
adds the check that only `orsay bot` makes, with a message an operator can act on."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from engine.settings import ConfigError, Settings
from engine.settings import load_settings as load_all

__all__ = ["ConfigError", "Settings", "load_settings", "require_token"]


def require_token(settings: Settings) -> str:
    """The bot token, or ConfigError saying where to get one (its shape is checked on load)."""
    if settings.token is None:
        raise ConfigError(
            "TELEGRAM_BOT_TOKEN is not set: get one from @BotFather and put it in the "
            "environment or in a .env file"
        )
    return settings.token.get_secret_value()


def load_settings(env: Mapping[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """engine.settings.load_settings, then `require_token`: the settings `orsay bot` runs with."""
    settings = load_all(env, dotenv)
    require_token(settings)
    return settings
