"""What a Telegram error means for the caller: "message is not modified" is success, `Forbidden`
is a user who blocked the bot (`Blocked`, so the caller can forget them), a read timeout may have
worked (`maybe_sent`), the rest is the error.

Retrying is not done here: every request already went through the one retry policy in
`bot.pacing` (flood waits, 5xx, timeouts), which also counts each error in TELEGRAM_ERRORS.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import httpx
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.warnings import PTBDeprecationWarning

T = TypeVar("T")
NOT_MODIFIED = "message is not modified"


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


def transient(exc: BaseException) -> bool:
    """A failure that a later try may mend: a 5xx, a timeout, no network. A bad request is a
    NetworkError in PTB's tree too, but trying it again cannot help. (A flood wait, RetryAfter,
    is mended by waiting its own time: callers treat it apart.)"""
    return isinstance(exc, NetworkError) and not isinstance(exc, BadRequest)


def maybe_sent(exc: BaseException) -> bool:
    """The request reached Telegram whole and its answer did not come in time (httpx's read
    timeout, which starts once the body is written): Telegram may have carried it out, and a new
    try may do it twice. Every other failure (no connection, the pool, a write cut short, a 5xx,
    a stop's cut) left nothing on Telegram's side that the bot can tell of, so trying again is
    safe. A dropped connection while waiting is not counted: a stale keep-alive connection fails
    the same way before Telegram saw anything, and losing a result is worse than a copy."""
    return isinstance(exc, TimedOut) and isinstance(exc.__cause__, httpx.ReadTimeout)


async def call(make: Callable[[], Awaitable[T]]) -> T | None:
    """Run `make()`: None for "message is not modified" (the edit is already there), `Blocked`
    for Forbidden, any other error as it is."""
    try:
        return await make()
    except Forbidden as exc:
        raise Blocked(str(exc)) from exc
    except BadRequest as exc:
        if error_kind(exc) == "not_modified":
            return None
        raise
