"""Telegram's global send pace with the user in front of the queue, and the one retry policy for
every Telegram call.

Telegram allows a bot about 30 messages a second across all chats. PTB's AIORateLimiter keeps that
pace first-come first-served, so under load a reply to someone who just sent a photo waits behind
progress edits and results of other people's jobs. Here sends to a chat take a token from one
bucket (`rate` per second, bursts up to `rate`), handed out by a single dispatcher task:
foreground calls first, then calls made with `rate_limit_args=True` (background deliveries, see
bot.follow). A 429 pauses every call for its `retry_after`, as Telegram expects.

Every request of the bot passes through `process_request`, so the retry policy lives here and
nowhere else (callers do not retry): at most `ATTEMPTS` tries of one call; after a 429 the next try
waits out its `retry_after` (a flood wait over `MAX_RETRY_AFTER_S` fails the call at once); after a
5xx or a timeout it backs off `BACKOFF_S`, then twice that, and so on. A loop rather than tenacity
or stamina: each try must also take its turn in the bucket and a 429 must pause the other calls,
which is what this loop already does; a library would wrap it, not replace it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError
from telegram.ext import BaseRateLimiter

from bot.tg import error_kind, retry_after_s
from engine.observability.metrics import TELEGRAM_ERRORS

ATTEMPTS = 5  # one try and four retries: one 429 costs at most 5 sends
MAX_RETRY_AFTER_S = 60.0
BACKOFF_S = 0.5  # 5xx / timeouts: 0.5, 1, 2, 4 s between the tries


def retry_delay(exc: TelegramError, attempt: int, backoff_s: float = BACKOFF_S) -> float | None:
    """Seconds to wait before the next try after `exc` on try number `attempt`; None: give up."""
    if isinstance(exc, RetryAfter):
        wait = retry_after_s(exc)
        return wait + 0.1 if wait <= MAX_RETRY_AFTER_S else None
    if isinstance(exc, NetworkError) and not isinstance(exc, BadRequest):  # 5xx, TimedOut
        return backoff_s * 2 ** (attempt - 1)
    return None  # a bad request, a blocked user, a wrong token: trying again cannot help


class ForegroundFirstLimiter(BaseRateLimiter[bool]):
    def __init__(
        self, rate: float = 30.0, attempts: int = ATTEMPTS, backoff_s: float = BACKOFF_S
    ) -> None:
        self.rate, self.attempts, self.backoff_s = rate, attempts, backoff_s
        self._tokens, self._stamp = rate, time.monotonic()
        self._paused_until = 0.0  # after a 429
        self._foreground: deque[asyncio.Future[None]] = deque()
        self._background: deque[asyncio.Future[None]] = deque()
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None

    async def initialize(self) -> None:
        pass

    async def shutdown(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._dispatcher
            self._dispatcher = None

    def _wait_for_token(self) -> float:
        """0 after taking a token, else the seconds until one is there."""
        now = time.monotonic()
        if now < self._paused_until:
            return self._paused_until - now
        if self.rate <= 0:
            return 0.0
        self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return 0.0
        return (1 - self._tokens) / self.rate

    async def _dispatch(self) -> None:
        while True:
            if not self._foreground and not self._background:
                self._wake.clear()
                await self._wake.wait()
                continue
            delay = self._wait_for_token()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            waiting = self._foreground or self._background
            future = waiting.popleft()
            if future.done():  # the caller gave up; the token is simply spent
                continue
            future.set_result(None)

    async def _slot(self, background: bool) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._background if background else self._foreground).append(future)
        self._wake.set()
        await future

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | dict[str, Any] | list[dict[str, Any]]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: bool | None,
    ) -> bool | dict[str, Any] | list[dict[str, Any]]:
        paced = data.get("chat_id") is not None  # sends to chats; callbacks/getFile are free
        for attempt in range(1, self.attempts + 1):
            pause = self._paused_until - time.monotonic()
            if paced:
                await self._slot(bool(rate_limit_args))
            elif pause > 0:
                await asyncio.sleep(pause)
            try:
                return await callback(*args, **kwargs)
            except TelegramError as exc:
                TELEGRAM_ERRORS.labels(kind=error_kind(exc)).inc()
                delay = retry_delay(exc, attempt, self.backoff_s)
                if delay is None or attempt == self.attempts:
                    raise
                if isinstance(exc, RetryAfter):  # Telegram asks the whole bot to wait
                    self._paused_until = max(self._paused_until, time.monotonic() + delay)
                else:
                    await asyncio.sleep(delay)
        raise AssertionError("unreachable")
