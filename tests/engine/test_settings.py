"""engine.settings and engine.presets: one settings object, one table of presets, and the
house rules they stand for (only the settings module touches the environment; engine never
imports the bot)."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import get_args

import pytest

from engine import presets
from engine.options import Quality
from engine.queue.redis_backend.keys import MAX_RANK
from engine.settings import (
    CUDA_BATCH,
    MAX_JOBS_PER_USER,
    ConfigError,
    QueueLimits,
    Settings,
    default_batch,
    is_redis_url,
    load_settings,
)

REPO = Path(__file__).resolve().parents[2]
TOKEN = "123456789:AAsecret-for-the-settings-test"

# Every variable as an operator would write it, and what the code should see.
WRITTEN = {
    "TELEGRAM_BOT_TOKEN": TOKEN,
    "ORSAY_BOT_API_URL": "http://127.0.0.1:8081/",
    "ORSAY_DATA_DIR": "/srv/orsay",
    "ORSAY_QUEUE": "redis://redis:6379/0",
    "ORSAY_VGG_WEIGHTS": "/models/vgg.pth",
    "ORSAY_GALLERY_DIR": "/srv/paintings",
    "ORSAY_DEVICE": "cuda:1",
    "ORSAY_MAX_SIZE": "768",
    "ORSAY_PRINT_SIZE": "2048",
    "ORSAY_ADMINS": "1, 22,333",
    "ORSAY_METRICS_PORT": "9100",
    "ORSAY_LOG_LEVEL": "warning",
    "ORSAY_RETENTION": "60",
    "ORSAY_SHUTDOWN_GRACE": "2.5",
    "ORSAY_SHARED": "/data/shared",
    "ORSAY_MODEL": "vgg16",
    "ORSAY_TELEGRAM_RATE": "0",
    "ORSAY_WORKER_LEASE": "5",
    "ORSAY_WORKER_POLL": "0.5",
    "ORSAY_JOB_TIMEOUT": "600",
    "ORSAY_PAINTER": "stub",
    "ORSAY_BATCH": "8",
    "ORSAY_JOBS_PER_USER": "3",
    "ORSAY_MAX_QUEUE": "500",
    "ORSAY_STOP_S": "45",
    "ORSAY_STORE_OUTAGE_S": "120",
}
SEEN = {
    "api_url": "http://127.0.0.1:8081",
    "data_dir": Path("/srv/orsay"),
    "queue_url": "redis://redis:6379/0",
    "weights": "/models/vgg.pth",
    "gallery_dir": Path("/srv/paintings"),
    "device": "cuda:1",
    "max_size": 768,
    "print_size": 2048,
    "admins": frozenset({1, 22, 333}),
    "metrics_port": 9100,
    "log_level": "WARNING",
    "retention_s": 60.0,
    "shutdown_grace_s": 2.5,
    "shared_dir": Path("/data/shared"),
    "model": "vgg16",
    "telegram_rate": 0,
    "worker_lease_s": 5.0,
    "worker_poll_s": 0.5,
    "job_timeout_s": 600.0,
    "painter": "stub",
    "batch": 8,
    "jobs_per_user": 3,
    "max_queue": 500,
    "stop_s": 45.0,
    "store_outage_s": 120.0,
}


def _aliases() -> set[str]:
    return {str(field.validation_alias) for field in Settings.model_fields.values()}


def _clear_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in _aliases():
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray ./.env


def test_readme_table_lists_exactly_the_settings() -> None:
    table = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", (REPO / "README.md").read_text(), re.M))
    assert table == _aliases()
    assert set(WRITTEN) == _aliases()  # this test covers every variable


def test_environment_and_mapping_parse_alike(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The process environment (pydantic-settings' own source) and an explicit mapping give the
    same settings, so tests that pass a mapping check what operators get."""
    _clear_environment(monkeypatch, tmp_path)
    for name, value in WRITTEN.items():
        monkeypatch.setenv(name, value)
    from_env, from_mapping = load_settings(), load_settings(WRITTEN)
    assert from_env == from_mapping
    for field, expected in SEEN.items():
        assert getattr(from_env, field) == expected, field
    assert from_env.token is not None and from_env.token.get_secret_value() == TOKEN
    assert from_env.secrets == [TOKEN]


def test_defaults_and_blank_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _clear_environment(monkeypatch, tmp_path)
    default = load_settings()
    assert default == load_settings({})
    assert (default.token, default.queue_url, default.metrics_port) == (None, None, None)
    assert (default.max_size, default.telegram_rate, default.model) == (512, 30, "vgg19")
    assert default.batch is None  # the painter's device decides (default_batch)
    assert (default.retention_s, default.shutdown_grace_s) == (0.0, 30.0)
    assert (default.stop_s, default.store_outage_s) == (60.0, 300.0)
    assert default.gallery == default.data_dir / "gallery"
    assert default.style_cache_dir == default.data_dir / "style-cache"
    blank = {name: " " for name in WRITTEN}  # `ORSAY_MAX_SIZE=` in a compose file: the default
    assert load_settings(blank) == default
    for name in WRITTEN:
        monkeypatch.setenv(name, "")
    assert load_settings() == default


def test_an_explicit_mapping_ignores_the_process_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("ORSAY_DEVICE=cpu\n")
    monkeypatch.setenv("ORSAY_MAX_SIZE", "128")
    assert load_settings().max_size == 128 and load_settings().device == "cpu"
    assert load_settings({}).max_size == 512 and load_settings({}).device == "auto"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ORSAY_MAX_SIZE", "big", "ORSAY_MAX_SIZE must be a whole number, not 'big'"),
        ("ORSAY_MAX_SIZE", "10", "ORSAY_MAX_SIZE must be between 64 and 4096, not 10"),
        ("ORSAY_METRICS_PORT", "70000", "ORSAY_METRICS_PORT must be between 0 and 65535"),
        ("ORSAY_TELEGRAM_RATE", "fast", "ORSAY_TELEGRAM_RATE must be a whole number"),
        ("ORSAY_RETENTION", "a day", "ORSAY_RETENTION must be a number of seconds"),
        ("ORSAY_SHUTDOWN_GRACE", "-1", "ORSAY_SHUTDOWN_GRACE must not be negative"),
        ("ORSAY_WORKER_LEASE", "x", "ORSAY_WORKER_LEASE must be a number of seconds"),
        ("ORSAY_WORKER_POLL", "-0.1", "ORSAY_WORKER_POLL must not be negative"),
        ("ORSAY_JOB_TIMEOUT", "-5", "ORSAY_JOB_TIMEOUT must not be negative"),
        ("ORSAY_BATCH", "0", "ORSAY_BATCH must be between 1 and 64, not 0"),
        ("ORSAY_BATCH", "many", "ORSAY_BATCH must be a whole number"),
        ("ORSAY_ADMINS", "1,bob", "ORSAY_ADMINS must be comma-separated"),
        ("ORSAY_BOT_API_URL", "ftp://x", "ORSAY_BOT_API_URL must start with http"),
        ("ORSAY_LOG_LEVEL", "loud", "ORSAY_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR"),
        ("ORSAY_QUEUE", "postgres://db", "ORSAY_QUEUE must be sqlite:///path or redis://"),
        ("ORSAY_MODEL", "resnet", "ORSAY_MODEL"),
        ("ORSAY_DEVICE", "gpu", "ORSAY_DEVICE: expected auto, cpu, cuda, cuda:N or mps, not 'gpu'"),
        ("ORSAY_JOBS_PER_USER", "0", "ORSAY_JOBS_PER_USER must be between 1 and 100, not 0"),
        ("ORSAY_MAX_QUEUE", "lots", "ORSAY_MAX_QUEUE must be a whole number, not 'lots'"),
        ("TELEGRAM_BOT_TOKEN", "no colon", "TELEGRAM_BOT_TOKEN does not look like a bot token"),
    ],
)
def test_bad_values_name_their_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings({name: value})


def test_the_queue_limits_are_settings() -> None:
    assert load_settings({}).queue_limits == QueueLimits(per_user=2, max_queue=100)
    assert load_settings(WRITTEN).queue_limits == QueueLimits(per_user=3, max_queue=500)
    # the Redis line ranks a user's waiting jobs up to MAX_RANK (engine/queue/redis_backend)
    assert MAX_JOBS_PER_USER <= MAX_RANK


def test_the_token_never_shows() -> None:
    settings = load_settings({"TELEGRAM_BOT_TOKEN": TOKEN})
    secret = TOKEN.split(":")[1]
    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert secret not in text
    assert repr(settings).startswith("Settings(")
    with pytest.raises(ConfigError) as caught:
        load_settings({"TELEGRAM_BOT_TOKEN": TOKEN + " x"})
    assert secret not in str(caught.value)


def test_redis_urls_are_told_apart_in_one_place() -> None:
    for url in ("redis://h:6379/0", "rediss://h/0", "unix:///run/redis.sock", " redis://h"):
        assert is_redis_url(url)
    for url in (None, "", "sqlite:///q.db", "sqlite://", "http://redis"):
        assert not is_redis_url(url)
    assert load_settings({"ORSAY_QUEUE": "rediss://h/0"}).redis_queue
    assert not load_settings({}).redis_queue


def test_the_print_quality_is_offered_only_where_the_operator_sets_its_size() -> None:
    off = load_settings({})
    assert off.print_size == 0 and off.qualities == presets.QUALITIES
    assert off.size_for(presets.PRINT) == off.size_for(presets.DEFAULT_QUALITY)
    on = load_settings({"ORSAY_PRINT_SIZE": "4096", "ORSAY_MAX_SIZE": "384"})
    assert on.qualities == (*presets.QUALITIES, presets.PRINT)
    assert on.size_for(presets.PRINT) == 4096  # ORSAY_MAX_SIZE caps the others, not prints
    assert on.size_for("high") == 384
    with pytest.raises(ConfigError, match="ORSAY_PRINT_SIZE must be between 0 and 16384"):
        load_settings({"ORSAY_PRINT_SIZE": "20000"})


def test_presets_are_one_consistent_table() -> None:
    assert get_args(Quality) == (*presets.QUALITIES, presets.PRINT)
    assert set(presets.QUALITY) == {*presets.QUALITY_SIZES, presets.PRINT}
    assert set(presets.QUALITY_SIZES) == set(presets.QUALITIES)
    assert set(presets.STRENGTH_LEVELS) <= set(presets.STRENGTHS)
    levels = [presets.STRENGTHS[name] for name in presets.STRENGTH_LEVELS]
    assert levels == sorted(levels) and len(set(levels)) == len(levels)  # weakest first
    assert presets.DEFAULT_QUALITY in presets.QUALITIES
    assert presets.DEFAULT_STRENGTH in presets.STRENGTH_LEVELS
    sizes = [presets.size_for(q, 4096) for q in presets.QUALITIES]
    assert sizes == sorted(sizes) and presets.size_for("high", 300) == 300
    with pytest.raises(presets.UnknownPreset, match="unknown quality 'unknown': expected one of"):
        presets.size_for("unknown", 4096)
    with pytest.raises(presets.UnknownPreset, match=r"unknown strength 'unknown'.*gentle"):
        presets.strength_value("unknown")


# --- house rules, checked on the source ------------------------------------------------------


def _modules(*packages: str) -> list[Path]:
    return sorted(path for package in packages for path in (REPO / package).rglob("*.py"))


def _imported(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_engine_imports_nothing_from_the_bot_or_telegram() -> None:
    offenders = []
    for path in _modules("engine"):
        for name in _imported(ast.parse(path.read_text(), str(path))):
            if name.split(".")[0] in ("bot", "telegram", "orsay"):
                offenders.append(f"{path.relative_to(REPO)} imports {name}")
    assert not offenders
    assert len(_modules("engine")) > 20  # the walk saw the package


def test_only_the_settings_module_touches_the_environment() -> None:
    offenders = []
    for path in _modules("engine", "bot", "orsay", "bench", "scripts"):
        if path == REPO / "engine" / "settings.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            attribute = isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv")
            imported = isinstance(node, ast.ImportFrom) and node.module == "os"
            if imported and any(a.name in ("environ", "getenv") for a in node.names):
                attribute = True
            if attribute:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno}")  # type: ignore[attr-defined]
    assert not offenders


def test_batch_defaults_to_one_on_cpu_and_more_on_cuda() -> None:
    assert default_batch("cpu") == 1 and default_batch("mps") == 1
    assert default_batch("cuda") == default_batch("cuda:1") == CUDA_BATCH > 1
