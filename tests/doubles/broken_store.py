"""A store that can break: SQLite errors injected into the bot's store (bot.store.Store) or the
embedded queue's (engine.queue.embedded.store.SqliteJobStore), for a chosen number of calls, a
chosen time, or until healed.

    fault = break_store(store, DISK_FULL)            # every write fails from now on …
    fault = break_store(store, LOCKED, calls=3)      # … or the next 3 writes
    fault = break_store(store, IO_ERROR, seconds=2)  # … or the writes of the next 2 s
    fault.heal()                                     # the disk is back
    fault.failures                                   # how many writes failed so far

The object's connection (`Store._db`, `SqliteJobStore.conn`) is swapped for a proxy that raises
`sqlite3.OperationalError` with SQLite's own message before a write statement (INSERT, UPDATE,
DELETE, REPLACE, BEGIN, COMMIT) reaches the database, as a full disk, an I/O error or a lock
held past the busy timeout make a real one fail: nothing of that statement is written. Reads
(SELECT, PRAGMA) go through, as they do in WAL mode while a writer holds the lock; so does
ROLLBACK, which the code under test needs to leave a failed transaction. `match` narrows the
fault to statements containing that text (say "UPDATE updates SET payload") to fail one write
and not its neighbours. Call it on the event loop or the store's thread; the swap is one
attribute assignment.

For real processes (tests/chaos), where no proxy can be slipped in, the same fault is a lock:

    db = sqlite3.connect(data_dir / "bot" / "bot.sqlite3", isolation_level=None)
    db.execute("BEGIN IMMEDIATE")   # every write of the bot now waits, then fails
    ...                             # 'database is locked' after its 5 s busy timeout
    db.execute("ROLLBACK")          # healed
    db.close()

The bot's store connects with sqlite3's default timeout (5 s), so each of its writes blocks the
store's thread 5 s before it fails; its reads keep working (WAL). The embedded queue's store
waits 30 s (busy_timeout=30000 in engine.queue.embedded.store.connect) before it fails.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import Any

DISK_FULL = "database or disk is full"
IO_ERROR = "disk I/O error"
LOCKED = "database is locked"
WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "BEGIN", "COMMIT")


class StoreFault:
    """When the writes fail: the next `calls` of them, those of the next `seconds`, or every
    one until `heal` (neither given)."""

    def __init__(
        self,
        message: str,
        calls: int | None = None,
        seconds: float | None = None,
        match: str | None = None,
    ) -> None:
        self.message = message
        self.calls_left = calls
        self.until = None if seconds is None else time.monotonic() + seconds
        self.match = match
        self.healed = False
        self.failures = 0
        self._lock = threading.Lock()

    def heal(self) -> None:
        """The disk is back: every later write goes through."""
        self.healed = True

    def check(self, sql: str) -> None:
        """Raise SQLite's error for `sql` if it is a write and the fault is on."""
        words = sql.lstrip().split(None, 1)
        if not words or words[0].upper() not in WRITES:
            return
        if self.match is not None and self.match not in sql:
            return
        with self._lock:
            if not self._active():
                return
            if self.calls_left is not None:
                self.calls_left -= 1
            self.failures += 1
        raise sqlite3.OperationalError(self.message)

    def _active(self) -> bool:
        if self.healed:
            return False
        if self.calls_left is not None:
            return self.calls_left > 0
        return self.until is None or time.monotonic() < self.until


class BrokenConnection:
    """A sqlite3.Connection whose writes go through `fault` first; everything else is the
    real connection's (sqlite3.Connection's methods cannot be patched, hence a proxy)."""

    def __init__(self, real: sqlite3.Connection, fault: StoreFault) -> None:
        self.real = real
        self.fault = fault

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.fault.check(sql)
        return self.real.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> sqlite3.Cursor:
        self.fault.check(sql)
        return self.real.executemany(sql, *args)

    def executescript(self, script: str) -> sqlite3.Cursor:
        self.fault.check(script)
        return self.real.executescript(script)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def break_store(
    store: Any,
    message: str = DISK_FULL,
    *,
    calls: int | None = None,
    seconds: float | None = None,
    match: str | None = None,
) -> StoreFault:
    """Make `store`'s writes fail (module docstring); returns the fault to heal or count. A
    store broken twice keeps one proxy, with the newer fault."""
    fault = StoreFault(message, calls, seconds, match)
    attribute = "_db" if hasattr(store, "_db") else "conn"
    connection = getattr(store, attribute)
    if isinstance(connection, BrokenConnection):
        connection.fault = fault
    else:
        setattr(store, attribute, BrokenConnection(connection, fault))
    return fault
