"""The lock file that makes the embedded queue's SQLite file this process's alone."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from engine.queue.seam import QueueUnavailable


class LockFile:
    """An exclusive flock next to the database: a second process gets QueueUnavailable."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise QueueUnavailable(f"another process is using the queue at {self.path}") from None
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
