"""The event contract, both backends: what the painter says and how a job ended reach the
follower intact (the painter's messages, the result on `done`, the failure's reason code)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY

from engine.observability.logs import LogfmtFormatter
from engine.queue import JobEvent, JobState
from engine.queue.stub_painter import OOM_MESSAGE, StubPainter
from tests.doubles.queue_helpers import ErrorPainter, QueueFactory, request
from tests.engine.queue.test_queue_contract import follow, next_event


def failed_total() -> float:
    return REGISTRY.get_sample_value("orsay_jobs_total", {"state": "failed"}) or 0.0


async def test_painter_message_reaches_followers(make_queue: QueueFactory) -> None:
    painter = StubPainter(steps=20, scales=2, step_s=0.02)
    queue = await make_queue(painter=painter)
    await queue.submit(request(user=1, content=b"first in line"))  # the OOM job waits
    job_id, _ = await queue.submit(request(user=2, content=b"OOM on the second scale"))
    stream = queue.events(job_id).__aiter__()
    events = [await next_event(stream)]
    assert events[0].kind == "queued"  # following it from the start
    late: list[JobEvent] = []
    async for event in stream:
        events.append(event)
        if event.message and not late:  # a follower arriving after the note still gets it
            late_stream = queue.events(job_id).__aiter__()
            late = [await next_event(late_stream) for _ in range(2)]
            await late_stream.aclose()  # type: ignore[attr-defined]
    message = OOM_MESSAGE.format(size=painter.size)
    said = [(e.kind, e.scale, e.size, e.message, e.notice) for e in events if e.message]
    assert said == [("progress", 2, painter.size, message, "oom_retry")]
    assert all(e.job_id == job_id for e in events)
    assert events[-1].kind == "done"
    assert [e.kind for e in late] == ["started", "progress"] and late[1].message == message


async def test_done_carries_the_result_live_and_in_replay(make_queue: QueueFactory) -> None:
    queue = await make_queue(painter=StubPainter())
    job_id, _ = await queue.submit(request(content=b"the result, please"))
    live = (await follow(queue, job_id))[-1]
    replayed = await follow(queue, job_id, timeout=5)
    job = await queue.get(job_id)
    assert job is not None and job.result
    assert live.kind == "done" and live.result == job.result
    assert [e.kind for e in replayed] == ["done"] and replayed[0].result == job.result
    assert live.elapsed_s == pytest.approx(replayed[0].elapsed_s, abs=0.01)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        ("StyleNotFound", "style_not_found"),
        ("GalleryError", "gallery_error"),
        ("WeightsError", "weights_error"),
        ("NotAnImage", "not_an_image"),
        ("ImageTooLarge", "image_too_large"),
    ],
)
async def test_reason_codes_are_kept_and_logged(
    make_queue: QueueFactory, caplog: pytest.LogCaptureFixture, error: str, reason: str
) -> None:
    caplog.set_level(logging.WARNING, logger="engine.queue")
    failed_before = failed_total()
    queue = await make_queue(painter=ErrorPainter())
    job_id, _ = await queue.submit(request(content=error.encode()))
    live = (await follow(queue, job_id))[-1]
    replayed = await follow(queue, job_id, timeout=5)
    assert live == JobEvent(job_id, "failed", reason=reason)
    assert replayed == [live]
    job = await queue.get(job_id)
    assert job is not None and job.state == JobState.FAILED and job.error == reason
    logged = [LogfmtFormatter().format(r) for r in caplog.records]  # the line an operator reads
    assert any(
        f"job={job_id}" in line and f"reason={reason}" in line and error in line for line in logged
    ), logged
    stats = await queue.stats()
    assert stats.failed_today == 1
    for _ in range(200):  # the Redis worker counts right after it has published the event
        if failed_total() > failed_before:
            break
        await asyncio.sleep(0.01)
    assert failed_total() == failed_before + 1  # Orsay's metrics (the worker runs in-process)


async def test_job_timeout_fails_with_its_own_reason(make_queue: QueueFactory) -> None:
    queue = await make_queue(
        painter=StubPainter(steps=500, scales=1, step_s=0.02), job_timeout_s=0.5
    )
    job_id, _ = await queue.submit(request())
    events = await follow(queue, job_id)
    assert events[-1] == JobEvent(job_id, "failed", reason="timeout")
    job = await queue.get(job_id)
    assert job is not None and job.state == JobState.FAILED and job.error == "timeout"
    assert job.finished_at is not None and job.started_at is not None
    assert job.finished_at - job.started_at < 5  # stopped, not painted to the end (10 s)
