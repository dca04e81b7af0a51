"""Telegram's global send pace, with the user in front of the queue.

Telegram allows a bot about 30 messages a second across all chats. PTB's AIORateLimiter keeps that
pace first-come first-served, so under load a reply to someone who just sent a photo waits behind
progress edits and results of other people's jobs. Here sends to a chat take a token from one
bucket (`rate` per second, bursts up to `rate`), handed out by a single dispatcher task:
foreground calls first, then calls made with `rate_limit_args=True` (background deliveries, see
bot.follow). A 429 pauses every call for its `retry_after`, as Telegram expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from telegram.error import RetryAfter
from telegram.ext import BaseRateLimiter

from bot.tg import retry_after_s


class ForegroundFirstLimiter(BaseRateLimiter[bool]):
    def __init__(self, rate: float = 30.0, max_retries: int = 2) -> None:
        self.rate, self.max_retries = rate, max_retries
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
        for attempt in range(self.max_retries + 1):
            pause = self._paused_until - time.monotonic()
            if paced:
                await self._slot(bool(rate_limit_args))
            elif pause > 0:
                await asyncio.sleep(pause)
            try:
                return await callback(*args, **kwargs)
            except RetryAfter as exc:
                if attempt == self.max_retries:
                    raise
                until = time.monotonic() + retry_after_s(exc) + 0.1
                self._paused_until = max(self._paused_until, until)
        raise AssertionError("unreachable")
