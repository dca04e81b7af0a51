"""Logging never prints a secret (in any of the places a token turns up) and stays one line per
event, with users pseudonymised."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest

from engine.observability import logs
from engine.settings import load_settings

TOKEN = "7012345678:AAHkX9-secret_tokenABCDEFGHIJKLMNOPQ"  # Telegram's shape
PLAIN_SECRET = "hunter2-not-token-shaped"
ENCODED_TOKEN = TOKEN.replace(":", "%3A")
_PAIR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def parse_logfmt(line: str) -> dict[str, str]:
    return {k: v[1:-1] if v.startswith('"') else v for k, v in _PAIR.findall(line)}


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """configure_logging into a buffer; restore the root logger afterwards."""
    monkeypatch.delenv("ORSAY_LOG_LEVEL", raising=False)
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.getLogger("httpx").level)
    buffer = io.StringIO()
    logs.configure_logging(secrets=[TOKEN, PLAIN_SECRET], stream=buffer)
    yield buffer
    root.handlers[:] = saved[1]
    root.setLevel(saved[0])
    logging.getLogger("httpx").setLevel(saved[2])


def test_secrets_never_printed_in_message_args_exception_or_url(captured: io.StringIO) -> None:
    log = logging.getLogger("orsay.test")
    log.info(f"token in the message {TOKEN}")
    log.info("token in args %s and %r", TOKEN, PLAIN_SECRET)
    try:
        raise RuntimeError(f"request to /bot{TOKEN}/sendPhoto failed ({PLAIN_SECRET})")
    except RuntimeError:
        log.exception("send failed")
    logging.getLogger("httpx").warning(
        'HTTP Request: POST https://api.telegram.org/bot%s/getUpdates "HTTP/1.1 409"',
        ENCODED_TOKEN,
    )
    logging.getLogger("telegram.ext.Updater").error("extra", extra={"url": f"/bot{TOKEN}/x"})
    out = captured.getvalue()
    for secret in (TOKEN, ENCODED_TOKEN, PLAIN_SECRET, TOKEN.split(":")[1]):
        assert secret not in out
    assert out.count(logs.REDACTED) == 7  # 1 message, 2 args, 2 exception, 1 url, 1 extra
    lines = out.splitlines()
    assert len(lines) == 5  # the traceback did not spill over several lines
    assert "RuntimeError" in parse_logfmt(lines[2])["exc"]


def test_other_handlers_see_redacted_records_too(
    captured: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        logging.getLogger("some.library").info("connecting with %s", PLAIN_SECRET)
    assert caplog.records, "caplog saw nothing"
    assert PLAIN_SECRET not in caplog.text
    assert logs.REDACTED in caplog.text


def test_unregistered_token_shape_is_redacted() -> None:
    other = "5550001111:BBFfoo_bar-bazQUXquxQUXquxQUXquxQUXq"
    assert logs.redact(f"url /bot{other}/getMe") == f"url /bot{logs.REDACTED}/getMe"
    assert logs.redact("job 1234 took 5:01") == "job 1234 took 5:01"  # no false positive


def test_log_event_is_one_structured_line(captured: io.StringIO) -> None:
    log = logging.getLogger("orsay.queue")
    logs.log_event(
        log,
        "job.done",
        job_id="j-42",
        user_id=123456789,
        stage="done",
        duration_s=12.3456789,
        result=b"\xff\xd8" * 5000,
        note='said "hi" = ok',
    )
    (line,) = captured.getvalue().splitlines()
    fields = parse_logfmt(line)
    assert fields["level"] == "info" and fields["logger"] == "orsay.queue"
    assert fields["event"] == "job.done" and fields["job_id"] == "j-42"
    assert fields["stage"] == "done" and float(fields["duration_s"]) == pytest.approx(12.3457)
    assert fields["user"] == logs.hash_user(123456789)
    assert "123456789" not in line
    assert fields["result"] == "<10000 bytes>"
    assert fields["note"] == 'said \\"hi\\" = ok'
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields["ts"])


def test_hash_user_is_short_stable_and_distinct() -> None:
    hashes = {logs.hash_user(i) for i in range(1000)}
    assert len(hashes) == 1000
    assert logs.hash_user(42) == logs.hash_user(42)
    assert len(logs.hash_user(42)) <= 12 and "42" not in logs.hash_user(42)[:1]


def test_level_from_env_and_noisy_httpx_quieted(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    logging.getLogger("httpx").info("HTTP Request: POST .../getUpdates 200")
    assert captured.getvalue() == ""
    monkeypatch.setenv("ORSAY_LOG_LEVEL", "warning")
    logs.configure_logging(load_settings().log_level, stream=captured)
    assert len(logging.getLogger().handlers) >= 1
    assert sum(h is logs._handler for h in logging.getLogger().handlers) == 1
    logging.getLogger("orsay").info("hidden")
    logging.getLogger("orsay").warning("shown")
    assert "hidden" not in captured.getvalue() and "shown" in captured.getvalue()
    with pytest.raises(ValueError, match="unknown log level"):
        logs.configure_logging(level="LOUD", stream=captured)


def test_token_from_environment_is_always_a_secret(
    captured: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_secret = "12345:env-only-secret-0987"
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", env_secret)
    settings = load_settings()  # what every `orsay` command does first
    logs.configure_logging(settings.log_level, settings.secrets, stream=captured)
    logging.getLogger("orsay").warning("token=%s", env_secret)
    assert env_secret not in captured.getvalue()
