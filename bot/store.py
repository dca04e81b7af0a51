"""What the bot remembers between updates and across restarts: per-user settings and language,
the photo waiting for a style, where each user is in the photo → style conversation (for PTB's
persistence, bot.conversation), which chat message shows each job, and the write-ahead of
updates (bot.updates). SQLite (WAL) plus image files under `<data dir>/bot/`, so every button
keeps working after a restart and `/forget` can delete a user's pictures for real.

Every method is a coroutine that runs on the store's own thread (one connection, one thread, in
submission order), so no handler waits on the disk on the event loop; `stage_conversation` alone
is a plain call (it keeps a state in memory until its update's handled mark). A write is handed
to that thread before the caller's first await and is shielded from the caller's cancellation:
once a coroutine has called `set_job_messages`, the write happens even if the caller is
cancelled (a sent mark must never be lost to a graceful stop). The schema is versioned
(bot.schema).

Durability: WAL with synchronous=NORMAL survives a kill -9 of the bot (a committed write is in
the WAL file); an OS crash or power loss may lose the last commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TypeVar

from bot.schema import migrate
from engine import presets

OWN_STYLE = "own"  # last_style of a job painted in the user's own style picture
STRENGTHS = presets.STRENGTH_LEVELS  # the -/+ buttons step through these
QUALITIES = presets.QUALITIES
KEEP_HANDLED_S = 2 * 86400  # ids of handled updates / delivered jobs: Telegram keeps updates 24 h
# The running bot prunes rows past KEEP_HANDLED_S this often (bot.app), so the store holds two
# days of traffic however long the bot is up (bench/store_sizes.py); a prune of a store holding
# 200,000 update ids and 10,000 jobs' rows took about 1 ms, on the store's thread.
PRUNE_EVERY_S = 300.0
T = TypeVar("T")


@dataclass
class UserPrefs:
    user_id: int
    lang: str | None = None
    quality: str = presets.DEFAULT_QUALITY
    strength: str = presets.DEFAULT_STRENGTH
    keep_colors: bool = False
    as_file: bool = False
    last_style: str | None = None  # a gallery slug, or OWN_STYLE


@dataclass
class JobMessages:
    status_msg: int | None = None
    preview_msg: int | None = None
    sent: bool = False


@dataclass
class Journaled:
    """An update written ahead and not handled yet (bot.updates replays it)."""

    update_id: int
    payload: str  # the update's JSON, as Telegram sent it
    received_at: float  # when it was written (time.time())
    attempts: int  # how many starts began handling it


_PREF_FIELDS = tuple(f.name for f in fields(UserPrefs) if f.name != "user_id")
Staged = tuple[str, tuple[int | str, ...]]  # a conversation's name and PTB key


def _key_user(key: tuple[int | str, ...]) -> int | None:
    """The user of a conversation key: PTB's (chat id, user id) ends with it."""
    return key[-1] if key and isinstance(key[-1], int) else None


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "users").mkdir(parents=True, exist_ok=True)
        # conversation states waiting for their update's handled mark (stage_conversation)
        self._staged: dict[Staged, int | None] = {}
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="orsay-bot-store")
        try:
            self._db: sqlite3.Connection = self._thread.submit(self._open).result()
        except BaseException:
            self._thread.shutdown()
            raise

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.root / "bot.sqlite3", isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            migrate(db)
        except BaseException:
            db.close()
            raise
        self._prune_rows(db, time.time() - KEEP_HANDLED_S)
        return db

    def close(self) -> None:
        """Wait for the writes handed over so far, then close (blocking: call it off the loop)."""
        self._thread.submit(self._db.close).result()
        self._thread.shutdown()

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)` on the store's thread. Queued before the first await and shielded: the
        caller's cancellation stops the waiting, never the write."""
        future = asyncio.wrap_future(self._thread.submit(fn, *args))
        return await asyncio.shield(future)

    # -- settings ------------------------------------------------------------------------

    def _user(self, user_id: int) -> UserPrefs:
        row = self._db.execute(
            f"SELECT {', '.join(_PREF_FIELDS)} FROM users WHERE user_id = ?", (user_id,)
        ).fetchone()
        if row is None:
            return UserPrefs(user_id)
        prefs = UserPrefs(user_id, **dict(zip(_PREF_FIELDS, row, strict=True)))
        prefs.keep_colors, prefs.as_file = bool(prefs.keep_colors), bool(prefs.as_file)
        return prefs

    async def user(self, user_id: int) -> UserPrefs:
        return await self._run(self._user, user_id)

    def _update(self, user_id: int, once: str | None, changes: dict[str, object]) -> UserPrefs:
        self._db.execute(
            "INSERT OR IGNORE INTO users (user_id, updated_at) VALUES (?, ?)",
            (user_id, time.time()),
        )
        if changes:
            sets = ", ".join(f"{name} = ?" for name in changes)
            self._db.execute(
                f"UPDATE users SET {sets}, last_change = COALESCE(?, last_change), updated_at = ?"
                " WHERE user_id = ? AND (? IS NULL OR last_change IS NOT ?)",
                (*changes.values(), once, time.time(), user_id, once, once),
            )
        return self._user(user_id)

    async def update(
        self, user_id: int, *, once: str | None = None, **changes: object
    ) -> UserPrefs:
        """Change the user's settings; returns them as they are now. With `once` (the press that
        asks for the change) a change already made by that press is not made again: a toggle
        replayed after a restart must not toggle back."""
        unknown = set(changes) - set(_PREF_FIELDS)
        if unknown:
            raise ValueError(f"unknown user fields: {sorted(unknown)}")
        return await self._run(self._update, user_id, once, changes)

    # -- pictures ------------------------------------------------------------------------

    def _file(self, user_id: int, name: str) -> Path:
        return self.root / "users" / str(int(user_id)) / name

    def _save_image(self, user_id: int, name: str, data: bytes) -> None:
        path = self._file(user_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a crash never leaves half a photo behind

    async def save_image(self, user_id: int, name: str, data: bytes) -> None:
        """`name` is "photo" (waiting for a style) or "style" (the user's own style)."""
        await self._run(self._save_image, user_id, name, data)

    def _image(self, user_id: int, name: str) -> bytes | None:
        path = self._file(user_id, name)
        return path.read_bytes() if path.is_file() else None

    async def image(self, user_id: int, name: str) -> bytes | None:
        return await self._run(self._image, user_id, name)

    # -- jobs' chat messages -------------------------------------------------------------

    def _job_messages(self, job_id: str) -> JobMessages:
        row = self._db.execute(
            "SELECT status_msg, preview_msg, sent FROM job_messages WHERE job_id = ?", (job_id,)
        ).fetchone()
        return JobMessages() if row is None else JobMessages(row[0], row[1], bool(row[2]))

    async def job_messages(self, job_id: str) -> JobMessages:
        return await self._run(self._job_messages, job_id)

    def _set_job_messages(self, job_id: str, user_id: int, messages: JobMessages) -> None:
        self._db.execute(
            "INSERT INTO job_messages (job_id, user_id, status_msg, preview_msg, sent)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(job_id) DO UPDATE SET"
            " status_msg = excluded.status_msg, preview_msg = excluded.preview_msg,"
            " sent = excluded.sent",
            (job_id, user_id, messages.status_msg, messages.preview_msg, int(messages.sent)),
        )

    async def set_job_messages(self, job_id: str, user_id: int, messages: JobMessages) -> None:
        copy = JobMessages(messages.status_msg, messages.preview_msg, messages.sent)
        await self._run(self._set_job_messages, job_id, user_id, copy)

    async def finish_job(self, job_id: str) -> None:
        """The job is delivered and acknowledged: keep its row (a replayed press that finds the
        job must see it was sent) until KEEP_HANDLED_S have passed."""
        sql = "UPDATE job_messages SET finished_at = ? WHERE job_id = ?"
        await self._run(self._db.execute, sql, (time.time(), job_id))

    async def drop_job(self, job_id: str) -> None:
        """The queue has no such job (any more): nothing to remember about it."""
        await self._run(self._db.execute, "DELETE FROM job_messages WHERE job_id = ?", (job_id,))

    # -- conversation states -------------------------------------------------------------

    def _conversations(self, name: str) -> dict[tuple[int | str, ...], int]:
        rows = self._db.execute("SELECT key, state FROM conversations WHERE name = ?", (name,))
        return {tuple(json.loads(key)): state for key, state in rows}

    async def conversations(self, name: str) -> dict[tuple[int | str, ...], int]:
        return await self._run(self._conversations, name)

    def _set_conversation(self, name: str, key: tuple[int | str, ...], state: int | None) -> None:
        if state is None:
            self._db.execute(
                "DELETE FROM conversations WHERE name = ? AND key = ?", (name, json.dumps(key))
            )
            return
        self._db.execute(
            "INSERT INTO conversations (name, key, user_id, state) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(name, key) DO UPDATE SET state = excluded.state",
            (name, json.dumps(key), _key_user(key), int(state)),
        )

    async def set_conversation(
        self, name: str, key: tuple[int | str, ...], state: int | None
    ) -> None:
        """`key` is PTB's (chat id, user id); None ends the conversation. Written at once; the
        running bot's changes go through `stage_conversation` instead."""
        await self._run(self._set_conversation, name, key, state)

    def stage_conversation(self, name: str, key: tuple[int | str, ...], state: int | None) -> None:
        """Keep a conversation's new state (None: ended) until `handled` marks its user's update
        handled, and write it in that transaction. On disk an update is then either unhandled,
        with its user's state as it was before it, or handled, with the state it led to: a
        replay runs it under the state it first ran under. Call it on the event loop."""
        self._staged[(name, key)] = state

    # -- the write-ahead of updates (bot.updates) ----------------------------------------

    def _journal(self, update_id: int, payload: str) -> bool:
        return bool(
            self._db.execute(
                "INSERT OR IGNORE INTO updates (update_id, payload, received_at) VALUES (?, ?, ?)",
                (update_id, payload, time.time()),
            ).rowcount
        )

    async def journal(self, update_id: int, payload: str) -> bool:
        """Keep the update `payload` (its JSON) until it is handled; False if this update id is
        known already (Telegram sent it again), and then nothing is written."""
        return await self._run(self._journal, update_id, payload)

    async def begin(self, update_id: int) -> None:
        """Handling of the update starts: count it (Journaled.attempts) before it runs."""
        sql = "UPDATE updates SET attempts = attempts + 1 WHERE update_id = ?"
        await self._run(self._db.execute, sql, (update_id,))

    def _handled(self, update_id: int, states: list[tuple[Staged, int | None]]) -> None:
        with self._transaction():
            self._db.execute(
                "UPDATE updates SET payload = NULL, decision = NULL, handled_at = ?"
                " WHERE update_id = ?",
                (time.time(), update_id),
            )
            for (name, key), state in states:
                self._set_conversation(name, key, state)

    async def handled(self, update_id: int, user: int | None = None) -> None:
        """The update was handled: forget its content, keep its id (KEEP_HANDLED_S), and write
        the conversation states staged for `user` (`stage_conversation`), in one transaction.
        A state staged again while this was written stays staged, for that later update."""
        states = [
            (staged, state)
            for staged, state in self._staged.items()
            if user is not None and _key_user(staged[1]) == user
        ]
        await self._run(self._handled, update_id, states)
        for staged, state in states:
            if staged in self._staged and self._staged[staged] == state:
                del self._staged[staged]

    def _decide(self, update_id: int, choice: str) -> str:
        with self._transaction():
            self._db.execute(
                "UPDATE updates SET decision = COALESCE(decision, ?) WHERE update_id = ?",
                (choice, update_id),
            )
            row = self._db.execute(
                "SELECT decision FROM updates WHERE update_id = ?", (update_id,)
            ).fetchone()
        return str(row[0]) if row is not None and row[0] is not None else choice

    async def decide(self, update_id: int, choice: str) -> str:
        """The choice the update's first run made by chance, kept with the update until it is
        handled: `choice` the first time, the first one again on a replay (and `choice` for
        an update the journal does not hold)."""
        return await self._run(self._decide, update_id, choice)

    def _unhandled(self) -> list[tuple[int, str]]:
        rows = self._db.execute(
            "SELECT update_id, payload FROM updates WHERE handled_at IS NULL ORDER BY update_id"
        )
        return [(int(update_id), str(payload)) for update_id, payload in rows]

    async def unhandled(self) -> list[tuple[int, str]]:
        """(update id, payload) of every update not handled yet, oldest first."""
        return await self._run(self._unhandled)

    def _backlog(self) -> list[Journaled]:
        rows = self._db.execute(
            "SELECT update_id, payload, received_at, attempts FROM updates"
            " WHERE handled_at IS NULL ORDER BY update_id"
        )
        return [Journaled(int(u), str(p), float(r), int(a)) for u, p, r, a in rows]

    async def backlog(self) -> list[Journaled]:
        """Every update not handled yet, oldest first, with when it was written and how many
        starts began handling it: what `UpdateProcessor.replay` decides by."""
        return await self._run(self._backlog)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction, on the store's thread; a failure (COMMIT's too) rolls it back."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    # -- privacy -------------------------------------------------------------------------

    def _forget(self, user_id: int) -> None:
        self._db.execute("DELETE FROM users WHERE user_id = ?", (user_id,))
        self._db.execute("DELETE FROM job_messages WHERE user_id = ?", (user_id,))
        self._db.execute("DELETE FROM conversations WHERE user_id = ?", (user_id,))
        shutil.rmtree(self._file(user_id, "x").parent, ignore_errors=True)

    async def forget(self, user_id: int) -> None:
        await self._run(self._forget, user_id)

    # -- pruning -------------------------------------------------------------------------

    @staticmethod
    def _prune_rows(db: sqlite3.Connection, before: float) -> int:
        """Delete the updates handled and the jobs delivered before `before` (unix time);
        returns how many rows went."""
        gone = db.execute("DELETE FROM updates WHERE handled_at < ?", (before,)).rowcount
        sql = "DELETE FROM job_messages WHERE finished_at < ?"
        return gone + db.execute(sql, (before,)).rowcount

    async def prune(self) -> int:
        """Forget the ids of updates handled, and the rows of jobs delivered, more than
        KEEP_HANDLED_S ago; returns how many rows went. An update not handled yet, or a job
        not delivered yet, is never pruned. The store prunes when it opens, and the bot calls
        this every PRUNE_EVERY_S while it runs: a bot up for months keeps two days of rows."""
        return await self._run(self._prune_rows, self._db, time.time() - KEEP_HANDLED_S)
