"""End to end through each backend with the REAL engine painter (tiny random VGG19 weights):
a gallery painting and an uploaded style, a bad photo, and a slug that tries to name a file;
and two compatible jobs painted in one batch."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from engine.queue import (
    JobEvent,
    JobOptions,
    JobQueue,
    JobRequest,
    JobState,
    StyleChoice,
    open_queue,
)
from engine.queue.engine_painter import make_engine_painter
from engine.queue.redis_backend.worker import WorkerConfig, start_worker_task
from tests.doubles.queue_helpers import QueueFactory, RedisServer, redis_available

GALLERY_SLUG = "hokusai-great-wave-off-kanagawa"


@pytest.fixture
def engine_env(test_data: Path) -> Path:
    return test_data


async def follow(queue: JobQueue, job_id: str) -> list[JobEvent]:
    async def collect() -> list[JobEvent]:
        return [e async for e in queue.events(job_id)]

    return await asyncio.wait_for(collect(), 240)


@pytest.mark.slow
async def test_real_painter_end_to_end(
    make_queue: QueueFactory, engine_env: Path, random_weights: Path, tmp_path: Path
) -> None:
    painter = make_engine_painter(
        "vgg19",
        str(random_weights),
        "cpu",
        max_size=64,
        gallery=engine_env / "artworks",
        style_cache_dir=tmp_path / "data" / "style-cache",
    )
    queue = await make_queue(painter=painter)
    photo = (engine_env / "photos" / "chelsea-the-cat.png").read_bytes()
    uploaded = (engine_env / "artworks" / f"{GALLERY_SLUG}.jpg").read_bytes()
    fast = JobOptions(size=512, strength="strong", quality="fast")  # capped to 64 by the worker
    jobs = {
        "gallery": JobRequest(1, 1, photo, [StyleChoice(slug=GALLERY_SLUG)], fast),
        "upload": JobRequest(2, 2, photo, [StyleChoice(image=uploaded)], fast),
        "bad photo": JobRequest(3, 3, b"this is not a picture", [StyleChoice(slug=GALLERY_SLUG)]),
        "path as slug": JobRequest(4, 4, photo, [StyleChoice(slug="/etc/passwd")], fast),
    }
    ids = {name: (await queue.submit(req))[0] for name, req in jobs.items()}
    source = Image.open(io.BytesIO(photo))
    for name in ("gallery", "upload"):
        events = await follow(queue, ids[name])
        assert events[-1].kind == "done", (name, events[-1])
        result = Image.open(io.BytesIO(events[-1].result or b""))
        assert result.format == "JPEG" and max(result.size) == 64
        assert result.size[0] / result.size[1] == pytest.approx(
            source.size[0] / source.size[1], rel=0.05
        )  # aspect kept, never squashed
    failures = {
        name: (await follow(queue, ids[name]))[-1] for name in ("bad photo", "path as slug")
    }
    assert failures["bad photo"].kind == "failed" and failures["bad photo"].reason == "not_an_image"
    assert failures["path as slug"].kind == "failed"
    assert failures["path as slug"].reason == "style_not_found"
    for name in ("bad photo", "path as slug"):
        job = await queue.get(ids[name])
        assert job is not None and job.state == JobState.FAILED and job.attempts == 1  # no retry


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_real_painter_paints_compatible_jobs_in_one_batch(
    backend: str,
    engine_env: Path,
    random_weights: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import engine.style_transfer

    calls: list[int] = []
    real = engine.style_transfer.stylize_batch

    def counted(requests: Any, **kwargs: Any) -> Any:
        calls.append(len(requests))
        return real(requests, **kwargs)

    monkeypatch.setattr(engine.style_transfer, "stylize_batch", counted)
    painter = make_engine_painter(
        "vgg19", str(random_weights), "cpu", max_size=48, gallery=engine_env / "artworks", batch=2
    )
    assert painter.batch == 2
    photo = (engine_env / "photos" / "chelsea-the-cat.png").read_bytes()
    style = [StyleChoice(slug=GALLERY_SLUG)]
    fast = JobOptions(size=48, strength="strong", quality="fast")
    jobs = [JobRequest(user, user, photo, style, fast) for user in (1, 2)]
    assert painter.bucket(jobs[0]) == painter.bucket(jobs[1])
    handle = None
    if backend == "sqlite":  # both jobs wait in line before the painter looks
        queue = open_queue(None, data_dir=tmp_path)
        await queue.start()
        ids = [(await queue.submit(job))[0] for job in jobs]
        await queue.close()
        queue = open_queue(None, painter=painter, data_dir=tmp_path)
        await queue.start()
    else:
        redis_available()
        server = RedisServer(tmp_path)
        server.start()
        queue = open_queue(server.url)
        await queue.start()
        ids = [(await queue.submit(job))[0] for job in jobs]
        handle = await start_worker_task(WorkerConfig(url=server.url, poll_s=0.05), painter)
    try:
        followed = await asyncio.gather(*(follow(queue, job_id) for job_id in ids))
        for job_id, events in zip(ids, followed, strict=True):
            assert events[-1].kind == "done", events[-1]
            assert any(e.kind == "progress" and e.job_id == job_id for e in events)
            result = Image.open(io.BytesIO(events[-1].result or b""))
            assert result.format == "JPEG" and max(result.size) == 48
        assert calls == [2]  # both painted in one stylize_batch call
    finally:
        if handle is not None:
            await handle.close()
        await queue.close()
        if backend == "redis":
            server.stop()
