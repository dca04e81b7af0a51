"""Gallery paintings travel with their jobs, stored once by sha256, on both backends: a worker
with no gallery paints them, and a painting is deleted with the data of the last job needing it."""

from __future__ import annotations

import hashlib
import io
import sqlite3
import threading
from pathlib import Path

import pytest
from PIL import Image

from engine.errors import OrsayError
from engine.queue import JobQueue, JobRequest, StyleChoice
from engine.queue.embedded import SqliteQueue
from engine.queue.engine_painter import style_input
from engine.queue.redis_backend import RedisQueue
from engine.queue.redis_backend import keys as k
from engine.queue.seam import ProgressCallback
from engine.queue.stub_painter import StubPainter
from tests.doubles.queue_helpers import QueueFactory
from tests.engine.queue.test_queue_contract import follow


def png(colour: tuple[int, int, int], side: int = 24) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buf, format="PNG")
    return buf.getvalue()


PAINTING = png((200, 40, 10))
SHA = hashlib.sha256(PAINTING).hexdigest()


class NoGalleryPainter(StubPainter):
    """Resolves styles the way the engine painter does, with a gallery folder that does not
    exist, and records what the engine would have been given."""

    def __init__(self, gallery: Path) -> None:
        super().__init__(steps=1, scales=1)
        self.gallery = gallery
        self.seen: list[tuple[str | None, tuple[int, int]]] = []

    def __call__(
        self, request: JobRequest, progress: ProgressCallback, cancel: threading.Event
    ) -> bytes:
        for choice in request.styles:
            style = style_input(choice, self.gallery)
            self.seen.append((style.cache_key, style.image.size))
        return super().__call__(request, progress, cancel)


def gallery_job(user: int, image: bytes = PAINTING) -> JobRequest:
    return JobRequest(user, user, b"photo", [StyleChoice(slug="starry", image=image)])


async def stored_blobs(queue: JobQueue) -> dict[str, bytes]:
    """The paintings the backend holds now, by sha256, read straight from its storage."""
    if isinstance(queue, SqliteQueue):
        with sqlite3.connect(queue.path) as conn:
            return dict(conn.execute("SELECT sha256, data FROM blobs").fetchall())
    assert isinstance(queue, RedisQueue)
    names = await queue.redis.keys(k.BLOB_PREFIX + "*")
    return {name.decode()[len(k.BLOB_PREFIX) :]: await queue.redis.get(name) for name in names}


async def test_stored_once_kept_until_the_last_job_is_acknowledged(
    make_queue: QueueFactory, tmp_path: Path
) -> None:
    painter = NoGalleryPainter(tmp_path / "no-gallery")
    queue = await make_queue(painter=painter)
    ids = [(await queue.submit(gallery_job(user)))[0] for user in (1, 2)]
    for job_id in ids:
        assert (await follow(queue, job_id))[-1].kind == "done"
    assert await stored_blobs(queue) == {SHA: PAINTING}
    for job_id in ids:  # the jobs refer to it, they do not hold a copy each
        job = await queue.get(job_id)
        assert job is not None
        assert (job.request.styles[0].image, job.request.styles[0].sha256) == (None, SHA)
    # painted with no gallery, style targets cached under the painting's content
    assert painter.seen == [(f"sha256:{SHA}", (24, 24))] * 2
    assert not (tmp_path / "no-gallery").exists()
    await queue.acknowledge(ids[0])
    assert await stored_blobs(queue) == {SHA: PAINTING}
    await queue.acknowledge(ids[1])
    assert await stored_blobs(queue) == {}


async def test_forget_deletes_only_what_no_other_job_needs(make_queue: QueueFactory) -> None:
    queue = await make_queue()  # nobody paints: the jobs wait
    other = png((10, 200, 10))
    await queue.submit(gallery_job(1))
    await queue.submit(gallery_job(1, other))
    await queue.submit(gallery_job(2))
    assert set(await stored_blobs(queue)) == {SHA, hashlib.sha256(other).hexdigest()}
    await queue.forget(1)
    assert await stored_blobs(queue) == {SHA: PAINTING}  # user 2's job still needs it
    await queue.forget(2)
    assert await stored_blobs(queue) == {}


async def test_retention_keeps_the_painting_with_the_job(
    make_queue: QueueFactory, tmp_path: Path
) -> None:
    queue = await make_queue(painter=NoGalleryPainter(tmp_path), retention_s=3600)
    job_id, _ = await queue.submit(gallery_job(1))
    assert (await follow(queue, job_id))[-1].kind == "done"
    await queue.acknowledge(job_id)
    assert await stored_blobs(queue) == {SHA: PAINTING}
    if isinstance(queue, RedisQueue):  # and goes when the job's record expires
        ttl = await queue.redis.ttl(k.blob_key(SHA))
        assert 3500 < ttl <= 3601, ttl
        assert await queue.redis.ttl(k.job_key(job_id)) <= ttl


def test_uploads_are_never_cached_and_bare_slugs_use_the_workers_gallery(tmp_path: Path) -> None:
    upload = style_input(StyleChoice(image=PAINTING), tmp_path)
    assert upload.cache_key is None and upload.image.size == (24, 24)
    with pytest.raises(OrsayError):  # an old job's bare slug: this worker has no gallery
        style_input(StyleChoice(slug="starry"), tmp_path / "no-gallery")
