"""The embedded queue's file across versions (engine.queue.embedded.schema): a file written before
versions existed is upgraded with its jobs intact, a newer file is refused, and a new step runs
once, in one transaction.

data/queue-v0.sqlite3 was written by the embedded store of main at 172e1f9 (user_version 0, the
tables created IF NOT EXISTS): four jobs through its own submit/claim/finish/cancel, limits
per_user=5. "photo-done" (user 1, the gallery painting "starry") painted and finished with the
result b"result-jpeg", not yet delivered; "photo-running" (user 2, an uploaded style b"own-style",
strength "strong") claimed and left running, as by a process that died; "photo-queued" (user 1,
"starry" again, keep colours) waiting; "photo-cancelled" (user 3, "starry") cancelled while
waiting. The painting's bytes, b"painting-bytes", are stored once in the blobs table.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from engine.queue import JobState, QueueLimits
from engine.queue.embedded import SqliteQueue, schema
from engine.queue.embedded.store import SqliteJobStore, connect
from tests.doubles.queue_helpers import request

V0_FILE = Path(__file__).parent / "data" / "queue-v0.sqlite3"


def copy_of_v0(tmp_path: Path) -> Path:
    path = tmp_path / "queue.sqlite3"
    shutil.copyfile(V0_FILE, path)
    return path


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return schema.version(conn)


def columns(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [row[1] for row in conn.execute("PRAGMA table_info(jobs)")]


async def test_a_file_from_before_versions_is_upgraded_with_its_jobs(tmp_path: Path) -> None:
    path = copy_of_v0(tmp_path)
    assert user_version(path) == 0
    queue = SqliteQueue(path, limits=QueueLimits(per_user=5))
    await queue.start()
    try:
        assert user_version(path) == len(schema.MIGRATIONS)
        jobs = {job.request.content: job for job in await queue.undelivered()}
        assert set(jobs) == {b"photo-done", b"photo-running", b"photo-queued", b"photo-cancelled"}
        done = jobs[b"photo-done"]
        assert done.state == JobState.DONE and done.result == b"result-jpeg"
        assert done.request.options.quality == "fast" and done.request.meta == {"lang": "en"}
        assert jobs[b"photo-cancelled"].state == JobState.CANCELLED
        orphan = jobs[b"photo-running"]  # its process died: back in line, the try counted
        assert orphan.state == JobState.QUEUED and orphan.attempts == 1
        assert orphan.request.options.strength == "strong"
        waiting = jobs[b"photo-queued"]
        assert [await queue.position(j.id) for j in (orphan, waiting)] == [1, 2]
        _, position = await queue.submit(request(user=4, content=b"after the upgrade"))
        assert position == 3
        await queue.acknowledge(done.id)
        assert done.id not in {job.id for job in await queue.undelivered()}
    finally:
        await queue.close()
    store = SqliteJobStore(path, QueueLimits())  # the painter's side: pictures come back whole
    try:
        claimed = {request.content: request for _, request, _, _ in store.claim() + store.claim()}
    finally:
        store.close()
    assert claimed[b"photo-running"].styles[0].image == b"own-style"
    painting = claimed[b"photo-queued"].styles[0]
    assert painting.slug == "starry" and painting.image == b"painting-bytes"
    assert claimed[b"photo-queued"].options.preserve_colors is True


def test_a_new_file_starts_at_the_latest_version(tmp_path: Path) -> None:
    conn = connect(tmp_path / "queue.sqlite3")
    try:
        assert schema.migrate(conn) == len(schema.MIGRATIONS) == schema.version(conn)
        assert schema.migrate(conn) == len(schema.MIGRATIONS)  # nothing left to run
    finally:
        conn.close()


async def test_a_file_from_a_newer_orsay_is_refused(tmp_path: Path) -> None:
    path = copy_of_v0(tmp_path)
    newer = len(schema.MIGRATIONS) + 1
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {newer}")
    queue = SqliteQueue(path)
    with pytest.raises(schema.SchemaTooNew, match=f"schema version {newer}"):
        await queue.start()
    await queue.close()
    assert user_version(path) == newer  # left as it was


def test_an_appended_step_runs_once_and_a_failing_one_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = copy_of_v0(tmp_path)
    added = "ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;"
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, added))
    store = SqliteJobStore(path, QueueLimits())
    store.recover()
    store.close()
    assert user_version(path) == len(schema.MIGRATIONS)
    assert columns(path).count("idempotency_key") == 1
    before = columns(path)
    broken = "ALTER TABLE jobs ADD COLUMN half_done TEXT;\nSELECT * FROM no_such_table;"
    monkeypatch.setattr(schema, "MIGRATIONS", (*schema.MIGRATIONS, broken))
    conn = connect(path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
            schema.migrate(conn)
        assert not conn.in_transaction
    finally:
        conn.close()
    assert user_version(path) == len(schema.MIGRATIONS) - 1
    assert columns(path) == before  # the step's first statement was rolled back with it
