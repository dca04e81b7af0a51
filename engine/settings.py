"""Every setting Orsay has, read once from the environment and `.env`, checked at start.

`load_settings()` is called once by whoever starts a process (`orsay ...` in orsay.cli, the
benchmarks, scripts/) and the resulting `Settings` is passed down as arguments; no other module
reads or writes `os.environ`. Each field is named after its variable (README, "Configuration");
an invalid value stops the program with a `ConfigError` that names the variable. The Telegram
token is a `SecretStr`: masked in every repr and log line, required only by `orsay bot`
(bot.config checks that).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from platformdirs import user_data_dir
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from engine import presets

DEFAULT_API_URL = "https://api.telegram.org"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MAX_BATCH = 64
MAX_JOBS_PER_USER = 100  # the Redis line ranks at most this many waiting jobs of one user
MAX_PRINT_SIZE = 16384  # px; a print bigger than this is a poster, not a photo
DEVICE_NAMES = "auto, cpu, cuda, cuda:N or mps"
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
CUDA_BATCH = 4  # unmeasured: no GPU where this was written; to be measured on a GPU
_REPO = Path(__file__).resolve().parent.parent


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable and the fix."""


def is_redis_url(url: str | None) -> bool:
    """True for a Redis queue URL (workers paint), False for the embedded queue's."""
    return (url or "").strip().startswith(REDIS_SCHEMES)


def default_batch(device: str) -> int:
    """Jobs a painter takes at once when ORSAY_BATCH is unset, for a resolved device name
    (`cpu`, `cuda:0`, ...): 1 on CPU, where the convolutions already fill the cores and a batch
    only makes each job wait for the others, and CUDA_BATCH on a GPU, which one job leaves mostly
    idle. The CUDA figure is a guess, not a measurement: it is still to be measured on a GPU
    (bench/gpu_throughput.py)."""
    return CUDA_BATCH if device.startswith("cuda") else 1


def check_device(name: str) -> str:
    """`name` if it names a device Orsay can paint on (the syntax; whether that device is there
    is found out when the painter starts), else ValueError."""
    if not _DEVICE.fullmatch(name):
        raise ValueError(f"expected {DEVICE_NAMES}, not {name!r}")
    return name


def _var(name: str) -> Any:
    """An optional setting: None when the variable is unset."""
    return Field(None, validation_alias=name)


@dataclass(frozen=True)
class QueueLimits:
    """The operator's knobs on the queue, shared by both backends (`Settings.queue_limits`).
    Defined here, below engine.queue, which imports this module."""

    per_user: int = 2  # queued + running jobs of one user
    max_queue: int = 100  # jobs waiting, all users together
    max_attempts: int = 3  # tries of a job whose worker died (= 2 retries after the first)


class Settings(BaseSettings):
    """One process's configuration. Build it with `load_settings()`, not directly."""

    model_config = SettingsConfigDict(extra="ignore", frozen=True, env_file=None)

    token: SecretStr | None = Field(None, validation_alias="TELEGRAM_BOT_TOKEN")
    api_url: str = Field(DEFAULT_API_URL, validation_alias="ORSAY_BOT_API_URL")
    data_dir: Path = Field(
        default_factory=lambda: Path(user_data_dir("orsay", appauthor=False)),
        validation_alias="ORSAY_DATA_DIR",
    )
    queue_url: str | None = _var("ORSAY_QUEUE")
    weights: str = Field("torchvision", validation_alias="ORSAY_VGG_WEIGHTS")
    gallery_dir: Path | None = _var("ORSAY_GALLERY_DIR")
    device: str = Field("auto", validation_alias="ORSAY_DEVICE")
    max_size: int = Field(512, validation_alias="ORSAY_MAX_SIZE")
    print_size: int = Field(0, validation_alias="ORSAY_PRINT_SIZE")  # 0: no print quality
    # NoDecode: a comma-separated list as operators write it, not JSON (see _admin_ids).
    admins: Annotated[frozenset[int], NoDecode] = Field(
        frozenset(), validation_alias="ORSAY_ADMINS"
    )
    metrics_port: int | None = _var("ORSAY_METRICS_PORT")
    log_level: str = Field("INFO", validation_alias="ORSAY_LOG_LEVEL")
    retention_s: float = Field(0.0, validation_alias="ORSAY_RETENTION")
    shutdown_grace_s: float = Field(30.0, validation_alias="ORSAY_SHUTDOWN_GRACE")
    # The bot's whole stop, SIGTERM to exit, uploads in flight included; below compose's
    # stop_grace_period (90 s), so the supervisor never has to kill it.
    stop_s: float = Field(60.0, validation_alias="ORSAY_STOP_S")
    # How long the bot keeps retrying a store that fails (disk full, I/O error, a lock) before
    # it exits non-zero for its supervisor to restart it; Telegram keeps unconfirmed updates 24 h.
    store_outage_s: float = Field(300.0, validation_alias="ORSAY_STORE_OUTAGE_S")
    shared_dir: Path = Field(_REPO.parent / "shared", validation_alias="ORSAY_SHARED")
    model: Literal["vgg19", "vgg16"] = Field("vgg19", validation_alias="ORSAY_MODEL")
    telegram_rate: int = Field(30, validation_alias="ORSAY_TELEGRAM_RATE")
    worker_lease_s: float = Field(10.0, validation_alias="ORSAY_WORKER_LEASE")
    worker_poll_s: float = Field(0.2, validation_alias="ORSAY_WORKER_POLL")
    job_timeout_s: float = Field(3600.0, validation_alias="ORSAY_JOB_TIMEOUT")
    painter: str | None = _var("ORSAY_PAINTER")  # dev/test: "stub" or "module:factory"
    batch: int | None = _var("ORSAY_BATCH")  # None: default_batch(the painter's device)
    jobs_per_user: int = Field(2, validation_alias="ORSAY_JOBS_PER_USER")
    max_queue: int = Field(100, validation_alias="ORSAY_MAX_QUEUE")

    # -- parsing: blank means unset, numbers say which variable is wrong ------------------

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: Any) -> Any:
        """`ORSAY_MAX_SIZE=` in a .env or compose file means "the default", as it always did."""
        if not isinstance(data, Mapping):
            return data
        stripped = {k: v.strip() if isinstance(v, str) else v for k, v in data.items()}
        return {k: v for k, v in stripped.items() if v != ""}

    @field_validator(
        "max_size", "print_size", "metrics_port", "telegram_rate", "batch", "jobs_per_user",
        "max_queue", mode="before",
    )  # fmt: skip
    @classmethod
    def _whole_number(cls, value: Any, info: ValidationInfo) -> Any:
        low, high = {
            "max_size": (64, 4096),
            "print_size": (0, MAX_PRINT_SIZE),
            "metrics_port": (0, 65535),
            "batch": (1, MAX_BATCH),
            "jobs_per_user": (1, MAX_JOBS_PER_USER),
            "max_queue": (1, 100_000),
        }.get(str(info.field_name), (0, 1000))
        if value is None or isinstance(value, int):
            number = value
        else:
            try:
                number = int(str(value))
            except ValueError:
                raise ValueError(f"{_name(info)} must be a whole number, not {value!r}") from None
        if number is not None and not low <= number <= high:
            raise ValueError(f"{_name(info)} must be between {low} and {high}, not {number}")
        return number

    @field_validator(
        "retention_s", "shutdown_grace_s", "worker_lease_s", "worker_poll_s", "job_timeout_s",
        "stop_s", "store_outage_s", mode="before",
    )  # fmt: skip
    @classmethod
    def _seconds(cls, value: Any, info: ValidationInfo) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{_name(info)} must be a number of seconds, not {value!r}") from None
        if not seconds >= 0:
            raise ValueError(f"{_name(info)} must not be negative, not {value!r}")
        return seconds

    @field_validator("admins", mode="before")
    @classmethod
    def _admin_ids(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        ids = set()
        for part in value.replace(" ", "").split(","):
            if not part:
                continue
            if not part.lstrip("-").isdigit():
                raise ValueError(
                    f"ORSAY_ADMINS must be comma-separated Telegram user ids: {part!r}"
                )
            ids.add(int(part))
        return frozenset(ids)

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        url = value.rstrip("/")
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"ORSAY_BOT_API_URL must start with http:// or https://: {url!r}")
        return url

    @field_validator("token")
    @classmethod
    def _token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        secret = value.get_secret_value() if value is not None else ""
        if secret and (":" not in secret or any(c.isspace() for c in secret)):
            raise ValueError("TELEGRAM_BOT_TOKEN does not look like a bot token (<id>:<secret>)")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        level = value.upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"ORSAY_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR: {value!r}")
        return level

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        try:
            return check_device(value)
        except ValueError as error:
            raise ValueError(f"ORSAY_DEVICE: {error}") from None

    @field_validator("queue_url")
    @classmethod
    def _queue_scheme(cls, value: str | None) -> str | None:
        if value and not (is_redis_url(value) or value.startswith("sqlite://")):
            raise ValueError(
                f"ORSAY_QUEUE must be sqlite:///path or redis://host:port/db, not {value!r}"
            )
        return value

    @field_validator("gallery_dir", "data_dir", "shared_dir")
    @classmethod
    def _home(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    # -- derived values -----------------------------------------------------------------------

    @property
    def gallery(self) -> Path:
        """The gallery folder: ORSAY_GALLERY_DIR, else `<data dir>/gallery` (not created here)."""
        return self.gallery_dir if self.gallery_dir is not None else self.data_dir / "gallery"

    @property
    def style_cache_dir(self) -> Path:
        return self.data_dir / "style-cache"

    @property
    def queue_limits(self) -> QueueLimits:
        """ORSAY_JOBS_PER_USER and ORSAY_MAX_QUEUE, as both queue backends take them."""
        return QueueLimits(per_user=self.jobs_per_user, max_queue=self.max_queue)

    @property
    def redis_queue(self) -> bool:
        """Whether `orsay worker` processes paint (Redis) or the bot's own thread (embedded)."""
        return is_redis_url(self.queue_url)

    @property
    def secrets(self) -> list[str]:
        """Strings the logs must never show (configure_logging masks them)."""
        return [self.token.get_secret_value()] if self.token is not None else []

    @property
    def base_url(self) -> str:
        """PTB appends the token: requests go to {root}/bot<token>/<method>."""
        return f"{self.api_url}/bot"

    @property
    def base_file_url(self) -> str:
        return f"{self.api_url}/file/bot"

    def size_for(self, quality: str) -> int:
        """Output long side for a quality name, capped by the operator's ORSAY_MAX_SIZE; a
        print's is ORSAY_PRINT_SIZE (where prints are enabled)."""
        if quality == presets.PRINT:  # prints off: the bot paints the default quality instead
            return self.print_size or presets.size_for(presets.DEFAULT_QUALITY, self.max_size)
        return presets.size_for(quality, self.max_size)

    @property
    def qualities(self) -> tuple[str, ...]:
        """The qualities users may pick: the presets, and prints where ORSAY_PRINT_SIZE is set."""
        return presets.QUALITIES + ((presets.PRINT,) if self.print_size else ())


class _FromMapping(Settings):
    """Parses an explicit mapping only (tests, a child process's env dict): neither the process
    environment nor a .env file leaks in. load_settings copies the result into a plain
    `Settings`, so both ways give equal objects."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def _name(info: ValidationInfo) -> str:
    alias = Settings.model_fields[str(info.field_name)].validation_alias
    return str(alias or info.field_name)


def load_settings(env: Mapping[str, str] | None = None, dotenv: Path | None = None) -> Settings:
    """The settings of this process: from `env` if given (and nothing else), else from the
    environment, then `dotenv` (default `./.env`) for variables the environment lacks."""
    try:
        if env is not None:
            values: dict[str, Any] = dict(env)
            parsed = _FromMapping(**values)
            return Settings.model_construct(parsed.model_fields_set, **dict(parsed))
        return Settings(_env_file=dotenv or Path.cwd() / ".env")  # type: ignore[call-arg]
    except ValidationError as error:
        raise ConfigError(_explain(error)) from None


def _explain(error: ValidationError) -> str:
    """One line per bad variable: our own messages as they are, pydantic's with the name."""
    lines = []
    for problem in error.errors():
        cause = (problem.get("ctx") or {}).get("error")
        if isinstance(cause, ValueError):
            lines.append(str(cause))
        else:
            where = ".".join(str(part) for part in problem["loc"])
            lines.append(f"{where}: {problem['msg']}")
    return "; ".join(lines)


def child_env(**overrides: str) -> dict[str, str]:
    """This process's environment plus `overrides`: for starting `orsay` subprocesses
    (benchmarks) that read their own settings."""
    return {**os.environ, **overrides}
