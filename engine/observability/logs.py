"""One structured line per event, with secrets scrubbed before anything reaches stderr.

Operators read these lines in `docker compose logs` and ship them to log stores, so each record
is a single logfmt line (`ts=… level=… logger=… event=… job_id=…`) that both people and
machines can read. The bot token ends up in places we do not control (httpx logs every request
URL, which for Telegram contains `/bot<token>/`; exceptions quote URLs), so redaction runs on the
final record of every logger, not only ours.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO
from urllib.parse import quote

REDACTED = "[REDACTED]"
# Telegram bot tokens look like `123456789:AA…` (35 url-safe chars). Scrubbing that shape catches
# tokens we were not told about (a second bot, a token pasted into an error message).
_TOKEN_SHAPE = re.compile(r"(?<!\d)\d{5,}(?::|%3[Aa])[A-Za-z0-9_-]{30,}")
_SECRETS: set[str] = set()
_pattern: re.Pattern[str] | None = None

# Attributes every LogRecord has; anything else on a record came from `extra=` and is a field.
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_FIELDS_ATTR = "orsay_fields"
_NOISY = {"httpx": logging.WARNING, "httpcore": logging.WARNING, "apscheduler": logging.WARNING}


def _variants(secret: str) -> set[str]:
    """A secret as it may appear in text: raw and URL-encoded (tokens contain `:` → `%3A`)."""
    encoded = quote(secret, safe="")
    return {secret, encoded, encoded.replace("%3A", "%3a"), quote(secret)}


def add_secrets(secrets: Sequence[str]) -> None:
    """Register more strings to scrub from every log line from now on."""
    global _pattern
    for secret in secrets:
        if secret and len(secret) >= 4:  # a 1-3 char "secret" would shred every line
            _SECRETS.update(_variants(secret))
    if _SECRETS:
        alternatives = sorted(_SECRETS, key=len, reverse=True)  # longest first: no partial leaks
        _pattern = re.compile("|".join(re.escape(s) for s in alternatives))


def redact(text: str) -> str:
    """Replace every registered secret (and anything token-shaped) with `[REDACTED]`."""
    if _pattern is not None:
        text = _pattern.sub(REDACTED, text)
    return _TOKEN_SHAPE.sub(REDACTED, text)


class RedactingFilter(logging.Filter):
    """Scrubs message, args, exception and stack text, and string fields of a record in place.

    Attached to the root handler, it sees records of every propagating logger (httpx, telegram,
    redis); handlers after it therefore also get the clean record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # bad %-args: keep the raw template rather than drop the line
            message = str(record.msg)
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        fields = getattr(record, _FIELDS_ATTR, None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                if isinstance(value, str):
                    fields[key] = redact(value)
        return True


def _logfmt_value(value: object) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        value = f"<{len(value)} bytes>"  # never image bytes in logs
    elif isinstance(value, float):
        value = f"{value:.6g}"
    elif value is None:
        value = "null"
    elif isinstance(value, bool):
        value = str(value).lower()
    text = str(value)
    if text and not re.search(r'[\s"=\\]', text):
        return text
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped.replace("\r", "\\r").replace("\t", "\\t") + '"'


class LogfmtFormatter(logging.Formatter):
    """`ts=… level=… logger=… event=…|msg=… key=value …` on one line; exceptions are escaped
    into an `exc=` field so a traceback never spans lines."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        parts = [
            f"ts={ts}.{int(record.msecs):03d}Z",
            f"level={record.levelname.lower()}",
            f"logger={_logfmt_value(record.name)}",
        ]
        fields = getattr(record, _FIELDS_ATTR, None)
        if isinstance(fields, dict):
            parts.append(f"event={_logfmt_value(record.getMessage())}")
            parts += [f"{k}={_logfmt_value(v)}" for k, v in fields.items()]
        else:
            parts.append(f"msg={_logfmt_value(record.getMessage())}")
        for key, value in vars(record).items():
            if key not in _STANDARD and key != _FIELDS_ATTR:
                parts.append(f"{key}={_logfmt_value(value)}")
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts.append(f"exc={_logfmt_value(record.exc_text)}")
        if record.stack_info:
            parts.append(f"stack={_logfmt_value(record.stack_info)}")
        return redact(" ".join(parts))  # last line of defence: the final text itself


_handler: logging.Handler | None = None
_factory_installed = False


def _install_record_factory() -> None:
    """Scrub message, args and exception text as each record is born, so every handler (ours,
    a test's caplog, a third-party one) sees the clean record; extras are added later by
    `makeRecord` and are covered by `RedactingFilter` on our handler."""
    global _factory_installed
    if _factory_installed:
        return
    base = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:
            return record  # malformed args: logging itself reports those on emit
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(text)
        return record

    logging.setLogRecordFactory(factory)
    _factory_installed = True


def configure_logging(
    level: str | None = None, secrets: Sequence[str] = (), *, stream: TextIO | None = None
) -> None:
    """Route every logger to one redacting logfmt handler (stderr unless `stream`). Safe to call
    twice: the previous Orsay handler is replaced, not duplicated.

    Processes call it with their settings: `configure_logging(settings.log_level,
    settings.secrets)`, so the token (TELEGRAM_BOT_TOKEN) is masked even in a worker that never
    uses it. `level` defaults to INFO."""
    global _handler
    add_secrets(secrets)
    _install_record_factory()
    name = (level or "INFO").upper()
    numeric = logging.getLevelName(name)
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {name!r} (use DEBUG, INFO, WARNING or ERROR)")
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    _handler = logging.StreamHandler(stream or sys.stderr)
    _handler.addFilter(RedactingFilter())
    _handler.setFormatter(LogfmtFormatter())
    root.addHandler(_handler)
    root.setLevel(numeric)
    # httpx logs every Telegram request at INFO (with the token in the URL): one line per poll.
    for noisy, noisy_level in _NOISY.items():
        logging.getLogger(noisy).setLevel(max(noisy_level, numeric))
    logging.captureWarnings(True)


def hash_user(user_id: int) -> str:
    """A short stable pseudonym for a Telegram user id, so log lines of one user can be grouped
    without the logs carrying the id itself. (Ids are guessable by brute force; this keeps them
    out of casual view and log stores, it is not anonymisation.)"""
    digest = hashlib.blake2b(str(int(user_id)).encode(), digest_size=5, person=b"orsay-user")
    return "u" + digest.hexdigest()


def log_event(
    logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: object
) -> None:
    """Log `event` (a short dotted name like `job.done`) with key=value fields.

    A raw `user_id` field is replaced by `user=<hash_user(id)>` so callers cannot leak it by
    accident; bytes values are printed as their length only."""
    if "user_id" in fields:
        user_id = fields.pop("user_id")
        fields["user"] = hash_user(user_id) if isinstance(user_id, int) else REDACTED
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={_FIELDS_ATTR: fields})
