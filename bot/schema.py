"""The bot store's tables, as numbered migrations: `PRAGMA user_version` says how many of them a
database has had, and opening it runs the rest, each in one transaction with its new number.

A store written before versions existed has user_version 0 and the tables of migration 1
already; migration 1 creates them only if they are missing, so it upgrades that store and makes
a new one alike. Later migrations change what is there (ALTER TABLE, new tables) and must never
be edited once released: add one instead. tests/bot/test_store.py upgrades a store written by
the first release (tests/bot/data/store_v0.sql).
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: settings, the jobs' chat messages, conversation states (the first release)
    """
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
    """,
    # 2: the write-ahead of updates (bot.updates): the update as Telegram sent it until it is
    # handled, then its id alone, so a copy Telegram sends again is recognised. A delivered
    # job's messages row is kept (finished_at set) so a replayed press finds it delivered. The
    # press that last changed a user's settings, so a replayed toggle does not toggle back.
    """
    CREATE TABLE updates (
        update_id INTEGER PRIMARY KEY,
        payload TEXT,
        received_at REAL NOT NULL,
        handled_at REAL
    );
    CREATE INDEX updates_unhandled ON updates (handled_at, update_id);
    ALTER TABLE job_messages ADD COLUMN finished_at REAL;
    ALTER TABLE users ADD COLUMN last_change TEXT;
    """,
    # 3: what a replay needs to give the first run's answer (issue 30): how many starts began
    # handling each update (bot.updates sets aside one begun at MAX_STARTS starts without
    # ending), and a choice the first run made by chance (the 🎲 draw), so a replay makes it
    # again rather than another.
    """
    ALTER TABLE updates ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE updates ADD COLUMN decision TEXT;
    """,
)
VERSION = len(MIGRATIONS)


class NewerStore(RuntimeError):
    """The store was written by a newer Orsay; this one would misread it."""


def migrate(conn: sqlite3.Connection) -> int:
    """Bring `conn`'s database to VERSION; returns the version it had. `conn` must be in
    autocommit mode (isolation_level=None), so each migration is exactly one transaction."""
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > VERSION:
        raise NewerStore(
            f"the bot store has schema version {found}, this Orsay knows up to {VERSION}: "
            "run a newer Orsay, or restore a backup of the data dir"
        )
    for number in range(found + 1, VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _statements(MIGRATIONS[number - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return found


def _statements(script: str) -> list[str]:
    """A migration's statements (executescript would commit the open transaction first)."""
    return [part.strip() for part in script.split(";") if part.strip()]
