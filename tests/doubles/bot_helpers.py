"""Helpers for bot tests: a factory that runs the real bot in-process against the fake Bot API,
a JPEG maker, the SIGTERM-then-kill teardown for bot subprocesses, and `eventually` for state
that is read asynchronously (the bot's store)."""

from __future__ import annotations

import asyncio
import io
import random
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from PIL import Image

BotFactory = Callable[..., AbstractAsyncContextManager[Any]]


def jpeg(width: int = 96, height: int = 64, seed: int = 0, extra: bytes = b"") -> bytes:
    """A small noisy JPEG (distinct per seed); `extra` is appended after the image data, where
    decoders ignore it but the stub painter's markers see it."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), (rng.randrange(256), 80, 160))
    image.putdata([(rng.randrange(256), rng.randrange(256), 90) for _ in range(width * height)])
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return buf.getvalue() + extra


async def stop_bot_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the bot's graceful stop), then SIGKILL if it has not exited within 15 s."""
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(proc.wait, 15)
    except subprocess.TimeoutExpired:
        proc.kill()


async def eventually(
    read: Callable[[], Awaitable[Any]], expected: Any, timeout: float = 10.0
) -> None:
    """Wait until `await read()` equals `expected`; fail with the last value read."""
    deadline = time.monotonic() + timeout
    while (value := await read()) != expected:
        assert time.monotonic() < deadline, f"still {value!r}, not {expected!r}"
        await asyncio.sleep(0.02)
