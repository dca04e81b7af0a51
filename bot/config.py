"""Bot settings from the environment (and `.env`), checked once at start with messages an
operator can act on. The token lives only here and is masked in every repr."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_API_URL = "https://api.telegram.org"
QUALITY_SIZES = {"fast": 256, "balanced": 384, "high": 512}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable and the fix."""


@dataclass(frozen=True)
class Settings:
    token: str = field(repr=False)
    api_url: str = DEFAULT_API_URL
    data_dir: Path = Path("data")
    queue_url: str | None = None
    weights: str = "torchvision"
    gallery_dir: str | None = None
    device: str = "auto"
    max_size: int | None = None
    admins: frozenset[int] = frozenset()
    metrics_port: int | None = None
    log_level: str | None = None
    painter: str | None = None  # dev/test: "stub" or "module:factory" instead of the engine
    model: str = "vgg19"
    max_rate: float = 30.0  # messages/s across all chats (Telegram's broadcast limit); 0 = off

    def __repr__(self) -> str:  # the dataclass repr already skips the token; say so visibly
        return f"Settings(token='***', api_url={self.api_url!r}, data_dir={self.data_dir!r})"

    @property
    def base_url(self) -> str:
        """PTB appends the token: requests go to {root}/bot<token>/<method>."""
        return f"{self.api_url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.api_url}/file/bot"

    def size_for(self, quality: str) -> int:
        """Output long side for a quality name, capped by the operator's ORSAY_MAX_SIZE."""
        size = QUALITY_SIZES.get(quality, QUALITY_SIZES["balanced"])
        return min(size, self.max_size) if self.max_size else size


def _int(env: Mapping[str, str], name: str, low: int, high: int) -> int | None:
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, not {value}")
    return value


def _rate(env: Mapping[str, str]) -> float:
    rate = _int(env, "ORSAY_TELEGRAM_RATE", 0, 1000)
    return 30.0 if rate is None else float(rate)


def _admins(raw: str) -> frozenset[int]:
    ids = set()
    for part in raw.replace(" ", "").split(","):
        if not part:
            continue
        if not part.lstrip("-").isdigit():
            raise ConfigError(f"ORSAY_ADMINS must be comma-separated Telegram user ids: {part!r}")
        ids.add(int(part))
    return frozenset(ids)


def load_settings(env: Mapping[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """Settings from `env` (default: os.environ, after loading `.env` without overriding)."""
    if env is None:
        from dotenv import load_dotenv

        load_dotenv(dotenv or Path.cwd() / ".env", override=False)
        env = os.environ
    token = env.get("TELEGRAM_BOT_TOKEN", "").strip()
    if not token:
        raise ConfigError(
            "TELEGRAM_BOT_TOKEN is not set: get one from @BotFather and put it in the "
            "environment or in a .env file"
        )
    if ":" not in token or any(c.isspace() for c in token):
        raise ConfigError("TELEGRAM_BOT_TOKEN does not look like a bot token (<id>:<secret>)")
    api_url = (env.get("ORSAY_BOT_API_URL") or DEFAULT_API_URL).strip().rstrip("/")
    if not api_url.startswith(("http://", "https://")):
        raise ConfigError(f"ORSAY_BOT_API_URL must start with http:// or https://: {api_url!r}")
    from engine.paths import data_dir

    return Settings(
        token=token,
        api_url=api_url,
        data_dir=Path(env["ORSAY_DATA_DIR"]) if env.get("ORSAY_DATA_DIR") else data_dir(),
        queue_url=env.get("ORSAY_QUEUE", "").strip() or None,
        weights=env.get("ORSAY_VGG_WEIGHTS", "").strip() or "torchvision",
        gallery_dir=env.get("ORSAY_GALLERY_DIR", "").strip() or None,
        device=env.get("ORSAY_DEVICE", "").strip() or "auto",
        max_size=_int(env, "ORSAY_MAX_SIZE", 64, 4096),
        admins=_admins(env.get("ORSAY_ADMINS", "")),
        metrics_port=_int(env, "ORSAY_METRICS_PORT", 0, 65535),
        log_level=env.get("ORSAY_LOG_LEVEL", "").strip() or None,
        painter=env.get("ORSAY_PAINTER", "").strip() or None,
        model=env.get("ORSAY_MODEL", "").strip() or "vgg19",
        max_rate=_rate(env),
    )
