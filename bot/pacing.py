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

Ambiguous timeouts, per call kind. A read timeout after the whole request was written
(bot.tg.maybe_sent) leaves the bot not knowing whether Telegram carried the call out. A call that
uploads a file (`ONCE`: the result, a print, a preview and its replacement, the contact sheet) is
not tried again past that point, at most once: a new message sent twice is seen twice, Telegram
keeps what it received whole, and each try is the slow call of a slow link. Every other call is at
least once: an edit or a delete repeated is "not modified" or "not found", and a text reply sent
twice costs a duplicate line where a lost one leaves the user without an answer. Uploads wait
`UPLOAD_READ_S` for their answer, so the ambiguous case needs Telegram to answer later than that.
What each kind gives, counted on the slow-link double: tests/bot/test_delivery_timeouts.py.

The stop. Once the bot's stop has begun (`StopDeadline.begin`, on SIGTERM), every call, with its
tries, its 429 pauses and back-offs and its wait for a token, ends by the deadline's cut-off, as
one bound: not per try, not per chunk. A call cut there fails with `StopCut`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from telegram.error import RetryAfter, TelegramError, TimedOut
from telegram.ext import BaseRateLimiter
from telegram.request import BaseRequest

from bot.tg import error_kind, maybe_sent, retry_after_s, transient
from engine.observability.metrics import TELEGRAM_ERRORS

ATTEMPTS = 5  # one try and four retries: one 429 costs at most 5 sends
MAX_RETRY_AFTER_S = 60.0
BACKOFF_S = 0.5  # 5xx / timeouts: 0.5, 1, 2, 4 s between the tries
READ_S = 5.0  # a call without a file waits this for its answer (PTB's default)
# An upload's answer: the body drains at the link's pace after the client's last write (2 MB at
# 256 KB/s: 8 s), and under load Telegram answers an upload it kept 15 s late (issue 30).
UPLOAD_READ_S = 60.0
ONCE = frozenset({"sendPhoto", "sendDocument", "sendMediaGroup", "editMessageMedia"})  # uploads
STOP_RESERVE_S = 10.0  # of the stop, kept after the last Telegram call: marks, acks, the stores


class StopCut(TimedOut):
    """A call cut at the stop's deadline: nothing says whether Telegram has it."""


class StopDeadline:
    """The bot's one stop deadline: `stop_s` (ORSAY_STOP_S) from `begin()` (SIGTERM) to the
    process's exit. Telegram calls end by the cut-off, `reserve_s` before it, which leaves time
    to save what they did (a sent mark, an acknowledgement) and to close the stores."""

    def __init__(self, stop_s: float = 60.0) -> None:
        self.stop_s = stop_s
        self.reserve_s = min(STOP_RESERVE_S, stop_s / 5)
        self.at: float | None = None  # time.monotonic() of the end, once begun
        self.began = threading.Event()  # for a thread that waits for the stop (bot.app)
        self._bounds: set[asyncio.Timeout] = set()

    @property
    def begun(self) -> bool:
        return self.at is not None

    def begin(self) -> bool:
        """Start the clock, once; True the first time. Calls in flight get the cut-off now."""
        if self.at is not None:
            return False
        self.at = time.monotonic() + self.stop_s
        self.began.set()
        for bound in self._bounds:
            self._cut(bound)
        return True

    def left(self) -> float:
        """Seconds until the stop must be over (infinite while the bot runs)."""
        return math.inf if self.at is None else self.at - time.monotonic()

    def calls_left(self) -> float:
        """Seconds until the cut-off of Telegram calls."""
        return self.left() - self.reserve_s

    def _cut(self, bound: asyncio.Timeout) -> None:
        loop = asyncio.get_running_loop()
        bound.reschedule(loop.time() + max(0.0, self.calls_left()))

    @contextlib.asynccontextmanager
    async def bound(self) -> AsyncIterator[None]:
        """Run the block until the cut-off, which it gets when the stop begins (or at once, if it
        has): there it is cancelled and `StopCut` raised."""
        bound = asyncio.timeout(None)
        try:
            async with bound:
                self._bounds.add(bound)
                if self.begun:
                    self._cut(bound)
                try:
                    yield
                finally:
                    self._bounds.discard(bound)
        except TimeoutError as exc:
            if bound.expired():
                raise StopCut("cut at the stop's deadline") from exc
            raise


def retry_delay(exc: TelegramError, attempt: int, backoff_s: float = BACKOFF_S) -> float | None:
    """Seconds to wait before the next try after `exc` on try number `attempt`; None: give up."""
    if isinstance(exc, RetryAfter):
        wait = retry_after_s(exc)
        return wait + 0.1 if wait <= MAX_RETRY_AFTER_S else None
    if transient(exc):  # 5xx, TimedOut
        return backoff_s * 2 ** (attempt - 1)
    return None  # a bad request, a blocked user, a wrong token: trying again cannot help


def with_read_timeout(endpoint: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` with the read timeout of the call's kind, unless the caller chose one."""
    if kwargs.get("read_timeout") is not BaseRequest.DEFAULT_NONE:
        return kwargs
    return {**kwargs, "read_timeout": UPLOAD_READ_S if endpoint in ONCE else READ_S}


class ForegroundFirstLimiter(BaseRateLimiter[bool]):
    def __init__(
        self,
        rate: float = 30.0,
        attempts: int = ATTEMPTS,
        backoff_s: float = BACKOFF_S,
        deadline: StopDeadline | None = None,
    ) -> None:
        self.rate, self.attempts, self.backoff_s = rate, attempts, backoff_s
        self.deadline = deadline or StopDeadline()
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
        kwargs = with_read_timeout(endpoint, kwargs)
        paced = data.get("chat_id") is not None  # sends to chats; callbacks/getFile are free
        async with self.deadline.bound():  # every try, pause and back-off: one bound
            for attempt in range(1, self.attempts + 1):
                await self._turn(paced, bool(rate_limit_args))
                try:
                    return await callback(*args, **kwargs)
                except TelegramError as exc:
                    await self._after_failure(exc, attempt, endpoint)
        raise AssertionError("unreachable")

    async def _turn(self, paced: bool, background: bool) -> None:
        """Wait for this try's turn: a send slot for a call to a chat, else any 429 pause."""
        pause = self._paused_until - time.monotonic()
        if paced:
            await self._slot(background)
        elif pause > 0:
            await asyncio.sleep(pause)

    async def _after_failure(self, exc: TelegramError, attempt: int, endpoint: str) -> None:
        """Count the error, then raise it (no try left, or trying again cannot help or might
        send an upload twice) or wait before the next try."""
        TELEGRAM_ERRORS.labels(kind=error_kind(exc)).inc()
        delay = retry_delay(exc, attempt, self.backoff_s)
        if endpoint in ONCE and maybe_sent(exc):
            delay = None  # it may be in the chat already: at most once
        if delay is None or attempt == self.attempts:
            raise exc
        if isinstance(exc, RetryAfter):  # Telegram asks the whole bot to wait
            self._paused_until = max(self._paused_until, time.monotonic() + delay)
        else:
            await asyncio.sleep(delay)
