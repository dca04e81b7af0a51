"""Helpers for the queue tests: a throwaway redis-server, requests, and the backend list."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from engine import errors
from engine.queue import JobQueue, JobRequest, ProgressCallback, StyleChoice
from tests.doubles.needs import REDIS_ENV, REDIS_MISSING, missing, redis_server_binary

QueueFactory = Callable[..., Awaitable[JobQueue]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A throwaway redis-server the test can stop and start again on the same port and data."""

    def __init__(self, workdir: Path, fsync: str = "always") -> None:
        self.workdir = workdir
        self.fsync = fsync  # appendfsync: always | everysec
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                redis_server_binary() or "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--dir", str(self.workdir),
                "--save", "",
                "--appendonly", "yes",
                "--appendfsync", self.fsync,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def kill(self) -> None:
        """kill -9: no shutdown save; what survives is what the append-only file has."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


def redis_available() -> bool:
    """True, or skip (fail where ORSAY_REQUIRE_REDIS=1): see tests/doubles/needs.py."""
    if redis_server_binary():
        return True
    missing(REDIS_ENV, REDIS_MISSING)


def request(user: int = 1, content: bytes = b"photo", slug: str = "starry") -> JobRequest:
    return JobRequest(user_id=user, chat_id=user, content=content, styles=[StyleChoice(slug=slug)])


class ErrorPainter:
    """Raises the engine error whose class name is the request's content (b"GalleryError"):
    how a worker without a gallery, with broken weights or a bad photo ends a job."""

    def __call__(
        self, request: JobRequest, progress: ProgressCallback, cancel: threading.Event
    ) -> bytes:
        error = getattr(errors, request.content.decode())
        raise error("stub: " + error.__name__)
