"""What the bot remembers between updates and across restarts: per-user settings and language,
the photo waiting for a style, where each user is in the photo → style conversation (for PTB's
persistence, bot.conversation), and which chat message shows each job. SQLite (WAL) plus image
files under `<data dir>/bot/`, so every button keeps working after a restart and `/forget` can
delete a user's pictures for real."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from dataclasses import dataclass, fields
from pathlib import Path

from engine import presets

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id INTEGER PRIMARY KEY,
    lang TEXT,
    quality TEXT NOT NULL DEFAULT 'balanced',
    strength TEXT NOT NULL DEFAULT 'medium',
    keep_colors INTEGER NOT NULL DEFAULT 0,
    as_file INTEGER NOT NULL DEFAULT 0,
    last_style TEXT,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS job_messages (
    job_id TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL,
    status_msg INTEGER,
    preview_msg INTEGER,
    sent INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS conversations (
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    user_id INTEGER,
    state INTEGER NOT NULL,
    PRIMARY KEY (name, key)
);
"""
OWN_STYLE = "own"  # last_style of a job painted in the user's own style picture
STRENGTHS = presets.STRENGTH_LEVELS  # the -/+ buttons step through these
QUALITIES = presets.QUALITIES


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


_PREF_FIELDS = tuple(f.name for f in fields(UserPrefs) if f.name != "user_id")


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        (self.root / "users").mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.root / "bot.sqlite3", isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- settings ------------------------------------------------------------------------

    def user(self, user_id: int) -> UserPrefs:
        row = self._db.execute(
            f"SELECT {', '.join(_PREF_FIELDS)} FROM users WHERE user_id = ?", (user_id,)
        ).fetchone()
        if row is None:
            return UserPrefs(user_id)
        prefs = UserPrefs(user_id, **dict(zip(_PREF_FIELDS, row, strict=True)))
        prefs.keep_colors, prefs.as_file = bool(prefs.keep_colors), bool(prefs.as_file)
        return prefs

    def update(self, user_id: int, **changes: object) -> UserPrefs:
        unknown = set(changes) - set(_PREF_FIELDS)
        if unknown:
            raise ValueError(f"unknown user fields: {sorted(unknown)}")
        self._db.execute(
            "INSERT OR IGNORE INTO users (user_id, updated_at) VALUES (?, ?)",
            (user_id, time.time()),
        )
        if changes:
            sets = ", ".join(f"{name} = ?" for name in changes)
            self._db.execute(
                f"UPDATE users SET {sets}, updated_at = ? WHERE user_id = ?",
                (*changes.values(), time.time(), user_id),
            )
        return self.user(user_id)

    # -- pictures ------------------------------------------------------------------------

    def _file(self, user_id: int, name: str) -> Path:
        return self.root / "users" / str(int(user_id)) / name

    def save_image(self, user_id: int, name: str, data: bytes) -> None:
        """`name` is "photo" (waiting for a style) or "style" (the user's own style)."""
        path = self._file(user_id, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a crash never leaves half a photo behind

    def image(self, user_id: int, name: str) -> bytes | None:
        path = self._file(user_id, name)
        return path.read_bytes() if path.is_file() else None

    # -- jobs' chat messages -------------------------------------------------------------

    def job_messages(self, job_id: str) -> JobMessages:
        row = self._db.execute(
            "SELECT status_msg, preview_msg, sent FROM job_messages WHERE job_id = ?", (job_id,)
        ).fetchone()
        return JobMessages() if row is None else JobMessages(row[0], row[1], bool(row[2]))

    def set_job_messages(self, job_id: str, user_id: int, messages: JobMessages) -> None:
        self._db.execute(
            "INSERT INTO job_messages (job_id, user_id, status_msg, preview_msg, sent)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(job_id) DO UPDATE SET"
            " status_msg = excluded.status_msg, preview_msg = excluded.preview_msg,"
            " sent = excluded.sent",
            (job_id, user_id, messages.status_msg, messages.preview_msg, int(messages.sent)),
        )

    def drop_job(self, job_id: str) -> None:
        self._db.execute("DELETE FROM job_messages WHERE job_id = ?", (job_id,))

    # -- conversation states -------------------------------------------------------------

    def conversations(self, name: str) -> dict[tuple[int | str, ...], int]:
        rows = self._db.execute("SELECT key, state FROM conversations WHERE name = ?", (name,))
        return {tuple(json.loads(key)): state for key, state in rows}

    def set_conversation(self, name: str, key: tuple[int | str, ...], state: int | None) -> None:
        """`key` is PTB's (chat id, user id); None ends the conversation."""
        if state is None:
            self._db.execute(
                "DELETE FROM conversations WHERE name = ? AND key = ?", (name, json.dumps(key))
            )
            return
        user_id = key[-1] if key and isinstance(key[-1], int) else None
        self._db.execute(
            "INSERT INTO conversations (name, key, user_id, state) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(name, key) DO UPDATE SET state = excluded.state",
            (name, json.dumps(key), user_id, int(state)),
        )

    # -- privacy -------------------------------------------------------------------------

    def forget(self, user_id: int) -> None:
        self._db.execute("DELETE FROM users WHERE user_id = ?", (user_id,))
        self._db.execute("DELETE FROM job_messages WHERE user_id = ?", (user_id,))
        self._db.execute("DELETE FROM conversations WHERE user_id = ?", (user_id,))
        shutil.rmtree(self._file(user_id, "x").parent, ignore_errors=True)
