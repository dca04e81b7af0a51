"""The embedded queue's tables, as numbered steps: `PRAGMA user_version` says which ran.

Why steps: a queue file outlives the code that wrote it (Orsay upgraded with jobs still waiting),
so a change of tables is a step from one version to the next, never an edit of a shipped CREATE
statement. `MIGRATIONS[n - 1]` brings a file from version n - 1 to n; `migrate()` runs the steps
a file lacks when the queue starts, each in one transaction with its version bump, so a crash or
a failing step leaves the file at a version it really has. Version 1 is the schema of every file
written before versions existed (they read user_version 0): its CREATE ... IF NOT EXISTS leave
such a file as it is. A file from a newer Orsay is refused rather than guessed at.

To change the tables, append a step and never edit one that has shipped, e.g.

    ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
    CREATE UNIQUE INDEX jobs_idempotency ON jobs (user_id, idempotency_key);

tests/engine/queue/test_queue_schema.py upgrades a file written before versions existed.
"""

from __future__ import annotations

import sqlite3

V1_JOBS_AND_BLOBS = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    user_id INTEGER NOT NULL,
    chat_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    request BLOB,               -- full request with pictures; NULL once purged
    summary BLOB NOT NULL,      -- the request without pictures, kept for the record
    result BLOB,
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state, seq);
CREATE INDEX IF NOT EXISTS jobs_user ON jobs (user_id, state);
CREATE INDEX IF NOT EXISTS jobs_delivered ON jobs (delivered);
-- gallery paintings, stored once however many jobs need them (engine.queue.blobs)
CREATE TABLE IF NOT EXISTS blobs (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS job_blobs (
    job_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (job_id, sha256)
);
CREATE INDEX IF NOT EXISTS job_blobs_sha ON job_blobs (sha256);
"""

# Idempotent submits (the bot keys a job by the update that asked for it, so a replayed update
# finds its job). A table of its own, so that it needs no change to `jobs`.
V2_JOB_KEYS = """
CREATE TABLE IF NOT EXISTS job_keys (
    key TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""

# Step n (1-based) brings a file from version n - 1 to n. Append only.
MIGRATIONS: tuple[str, ...] = (V1_JOBS_AND_BLOBS, V2_JOB_KEYS)


class SchemaTooNew(RuntimeError):
    """The file was written by a newer Orsay, whose tables this code does not know."""


def version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Run the steps the file lacks, oldest first; its version afterwards. `conn` must be in
    autocommit mode (isolation_level=None), as engine.queue.embedded.store.connect makes it."""
    found, latest = version(conn), len(MIGRATIONS)
    if found > latest:
        raise SchemaTooNew(
            f"the queue file is schema version {found}, newer than this Orsay's {latest}: "
            "run the Orsay that wrote it, or point ORSAY_QUEUE at another file"
        )
    for number in range(found + 1, latest + 1):
        step = MIGRATIONS[number - 1]
        try:
            # executescript() commits whatever is open first, so the transaction is in the script
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{step}\nPRAGMA user_version = {number};\nCOMMIT;"
            )
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return latest
