"""Settings validation, token hygiene, and `orsay bot` as a command (polling and webhook)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.config import ConfigError, load_settings
from tests.doubles.bot_helpers import stop_bot_process
from tests.doubles.fake_telegram import TOKEN, FakeTelegram

REPO = Path(__file__).resolve().parents[2]


def test_settings_from_env_and_their_errors(tmp_path: Path) -> None:
    env = {
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "ORSAY_BOT_API_URL": "http://127.0.0.1:8081/",
        "ORSAY_DATA_DIR": str(tmp_path),
        "ORSAY_MAX_SIZE": "300",
        "ORSAY_ADMINS": "1, 22,333",
    }
    s = load_settings(env)
    assert s.base_url == "http://127.0.0.1:8081/bot"
    assert s.base_file_url == "http://127.0.0.1:8081/file/bot"
    assert s.admins == {1, 22, 333} and s.data_dir == tmp_path
    assert (s.size_for("fast"), s.size_for("balanced"), s.size_for("high")) == (256, 300, 300)
    assert TOKEN not in repr(s) and TOKEN not in str(s)
    for bad, message in [
        ({"TELEGRAM_BOT_TOKEN": ""}, "TELEGRAM_BOT_TOKEN is not set"),
        ({"TELEGRAM_BOT_TOKEN": "nocolon"}, "does not look like a bot token"),
        ({"ORSAY_MAX_SIZE": "big"}, "ORSAY_MAX_SIZE must be a whole number"),
        ({"ORSAY_ADMINS": "1,bob"}, "ORSAY_ADMINS must be comma-separated"),
        ({"ORSAY_BOT_API_URL": "ftp://x"}, "must start with http"),
        ({"ORSAY_METRICS_PORT": "70000"}, "ORSAY_METRICS_PORT must be between"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_settings({**env, **bad})


def test_dotenv_is_read_without_overriding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\nORSAY_MAX_SIZE=200\n")
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.setenv("ORSAY_MAX_SIZE", "128")
    monkeypatch.setenv("ORSAY_DATA_DIR", str(tmp_path))
    s = load_settings(dotenv=dotenv)
    assert s.token is not None and s.token.get_secret_value() == TOKEN and s.max_size == 128


def test_cli_without_token_says_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "TELEGRAM_BOT_TOKEN"}
    probe = (
        "import orsay.cli, sys; from engine.settings import load_settings; "
        "orsay.cli.build_parser(load_settings()); print('telegram' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True)
    assert out.stdout.strip() == b"False"  # the CLI does not import Telegram code to parse
    run = subprocess.run(
        [sys.executable, "-m", "orsay", "bot"], cwd=tmp_path, env=env, capture_output=True
    )
    assert run.returncode == 2
    assert b"TELEGRAM_BOT_TOKEN is not set" in run.stderr and b"@BotFather" in run.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_webhook_mode_checks_the_secret(
    telegram: FakeTelegram, bot_env: dict[str, str], tmp_path: Path
) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/hook"
    env = {**os.environ, **bot_env, "ORSAY_PAINTER": "stub"}
    log = tmp_path / "bot.log"
    cmd = [sys.executable, "-m", "orsay", "bot", "--webhook-url", url, "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        hook = await telegram.wait_for(lambda: telegram.webhook, timeout=30)
        assert hook["url"] == url and len(hook["secret_token"]) >= 32
        update = {
            "update_id": 1,
            "message": {
                "message_id": 1,
                "date": 0,
                "chat": {"id": 301, "type": "private"},
                "from": {"id": 301, "is_bot": False, "first_name": "W", "language_code": "en"},
                "text": "/start",
                "entities": [{"type": "bot_command", "offset": 0, "length": 6}],
            },
        }
        async with aiohttp.ClientSession() as http:
            for _ in range(50):  # the listener comes up right after setWebhook
                try:
                    async with http.post(url, json=update) as forged:
                        assert forged.status == 403  # no secret header: refused
                    break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.2)
            headers = {"X-Telegram-Bot-Api-Secret-Token": hook["secret_token"]}
            async with http.post(url, json=update, headers=headers) as real:
                assert real.status == 200
        await telegram.user(301).wait_text("I repaint your photos")
    finally:
        await stop_bot_process(proc)
    assert TOKEN.split(":")[1] not in log.read_text()
