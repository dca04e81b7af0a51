"""Telegram calls that must survive Telegram: flood waits, timeouts, 5xx, blocked users.

PTB's AIORateLimiter already paces requests and retries a few `RetryAfter`s; `call()` adds what a
background delivery needs on top: back-off retries for network errors and 5xx, a longer budget
for 429s, "message is not modified" treated as success, and `Forbidden` surfaced as `Blocked` so
the caller can forget the user. Every error is counted in TELEGRAM_ERRORS by kind.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.warnings import PTBDeprecationWarning

from engine.observability.metrics import TELEGRAM_ERRORS

log = logging.getLogger(__name__)
T = TypeVar("T")
NOT_MODIFIED = "message is not modified"
MAX_RETRY_AFTER_S = 60.0


class Blocked(Exception):
    """The user blocked the bot (or deleted their account): stop talking to them."""


def retry_after_s(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that the int form is going away
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after  # int, or a timedelta when PTB_TIMEDELTA is set
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, RetryAfter):
        return "retry_after"
    if isinstance(exc, Forbidden):
        return "forbidden"
    if isinstance(exc, BadRequest):
        return "not_modified" if NOT_MODIFIED in str(exc).lower() else "bad_request"
    if isinstance(exc, TimedOut):
        return "timeout"
    if isinstance(exc, NetworkError):
        return "network"
    return "other"


async def call(
    make: Callable[[], Awaitable[T]], *, attempts: int = 5, backoff_s: float = 0.5
) -> T | None:
    """Run `make()` (a fresh request each try) until it succeeds.

    Returns None for "message is not modified" (the edit is already there). Raises `Blocked` on
    Forbidden, and the last error once `attempts` are spent or on any other BadRequest."""
    for attempt in range(1, attempts + 1):
        try:
            return await make()
        except RetryAfter as exc:
            TELEGRAM_ERRORS.labels(kind="retry_after").inc()
            if attempt == attempts:
                raise
            await asyncio.sleep(min(retry_after_s(exc), MAX_RETRY_AFTER_S) + 0.05)
        except Forbidden as exc:
            TELEGRAM_ERRORS.labels(kind="forbidden").inc()
            raise Blocked(str(exc)) from exc
        except BadRequest as exc:
            kind = error_kind(exc)
            TELEGRAM_ERRORS.labels(kind=kind).inc()
            if kind == "not_modified":
                return None
            raise
        except NetworkError as exc:  # TimedOut included; 5xx arrive as NetworkError too
            TELEGRAM_ERRORS.labels(kind=error_kind(exc)).inc()
            if attempt == attempts:
                raise
            delay = backoff_s * 2 ** (attempt - 1)
            log.info("telegram %s, retry %d in %.1f s", type(exc).__name__, attempt, delay)
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")
