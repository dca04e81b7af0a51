"""One behaviour, two backends: every test here runs against the embedded and the Redis queue."""

from __future__ import annotations

import asyncio
import io

import pytest
from PIL import Image

from engine.queue import (
    JobEvent,
    JobQueue,
    JobState,
    QueueFull,
    QueueLimits,
    TooManyActiveJobs,
)
from engine.queue.stub_painter import StubPainter, result_colour
from tests.doubles.queue_helpers import QueueFactory, request


async def follow(queue: JobQueue, job_id: str, timeout: float = 20.0) -> list[JobEvent]:
    async def collect() -> list[JobEvent]:
        return [event async for event in queue.events(job_id)]

    return await asyncio.wait_for(collect(), timeout)


async def next_event(stream: object, timeout: float = 10.0) -> JobEvent:
    return await asyncio.wait_for(stream.__anext__(), timeout)  # type: ignore[attr-defined]


def colour_of(jpeg: bytes) -> tuple[int, int, int]:
    return Image.open(io.BytesIO(jpeg)).convert("RGB").getpixel((4, 4))  # type: ignore[return-value]


def close_to(a: tuple[int, ...], b: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


async def test_job_runs_to_done_with_progress_and_result(make_queue: QueueFactory) -> None:
    queue = await make_queue(painter=StubPainter(steps=3, scales=2, step_s=0.05))
    await queue.submit(request(user=1, content=b"keeps the painter busy"))
    req = request(user=7, content=b"a photo")
    job_id, position = await queue.submit(req)
    assert position in (1, 2)
    events = await follow(queue, job_id)
    kinds = [e.kind for e in events]
    assert kinds[0] == "queued" and "started" in kinds
    assert kinds[-1] == "done" and kinds.count("done") == 1
    progress = [e for e in events if e.kind == "progress"]
    assert [(e.scale, e.step) for e in progress] == [(s, t) for s in (1, 2) for t in (1, 2, 3)]
    assert progress[-1].fraction == pytest.approx(1.0)
    assert [e.step for e in progress if e.preview] == [3, 3]  # a preview at the end of each scale
    assert close_to(colour_of(events[-1].result or b""), result_colour(req))
    job = await queue.get(job_id)
    assert job is not None and job.state == JobState.DONE and job.attempts == 1
    assert job.started_at is not None and job.finished_at is not None


async def test_events_replay_the_current_state(make_queue: QueueFactory) -> None:
    queue = await make_queue(painter=StubPainter())
    job_id, _ = await queue.submit(request())
    await follow(queue, job_id)
    replay = await follow(queue, job_id, timeout=5)  # a restarted bot following a finished job
    assert [e.kind for e in replay] == ["done"] and replay[0].result


async def test_queued_job_replays_position_and_eta(make_queue: QueueFactory) -> None:
    queue = await make_queue(limits=QueueLimits(per_user=5))
    for _ in range(3):
        job_id, position = await queue.submit(request(user=1))
    assert position == 3
    stream = queue.events(job_id).__aiter__()
    first = await next_event(stream)
    assert first.kind == "queued" and first.position == 3
    assert first.eta_s is not None and first.eta_s > 0
    await stream.aclose()  # type: ignore[attr-defined]


async def test_per_user_limit(make_queue: QueueFactory) -> None:
    queue = await make_queue(limits=QueueLimits(per_user=2))
    await queue.submit(request(user=1))
    await queue.submit(request(user=1))
    with pytest.raises(TooManyActiveJobs) as info:
        await queue.submit(request(user=1))
    assert info.value.limit == 2
    await queue.submit(request(user=2))  # other users are not affected
    assert len(await queue.active_jobs(1)) == 2


async def test_global_queue_limit(make_queue: QueueFactory) -> None:
    queue = await make_queue(limits=QueueLimits(per_user=1, max_queue=3))
    for user in range(3):
        await queue.submit(request(user=user))
    with pytest.raises(QueueFull) as info:
        await queue.submit(request(user=99))
    assert info.value.limit == 3
    assert (await queue.stats()).queued == 3


async def test_fair_order_round_robins_users(make_queue: QueueFactory) -> None:
    queue = await make_queue(limits=QueueLimits(per_user=3))
    a1, _ = await queue.submit(request(user=1))
    a2, _ = await queue.submit(request(user=1))
    a3, _ = await queue.submit(request(user=1))
    b1, b1_position = await queue.submit(request(user=2))
    c1, _ = await queue.submit(request(user=3))
    b2, _ = await queue.submit(request(user=2))
    assert b1_position == 2  # jumps ahead of user 1's second job
    positions = [await queue.position(j) for j in (a1, b1, c1, a2, b2, a3)]
    assert positions == [1, 2, 3, 4, 5, 6]


async def test_position_events_when_the_line_moves(make_queue: QueueFactory) -> None:
    queue = await make_queue(limits=QueueLimits(per_user=3))
    first, _ = await queue.submit(request(user=1))
    second, _ = await queue.submit(request(user=2))
    stream = queue.events(second).__aiter__()
    assert (await next_event(stream)).position == 2
    assert await queue.cancel(first)
    moved = await next_event(stream)
    assert moved.kind == "position" and moved.position == 1
    _, position = await queue.submit(request(user=3))
    assert position == 2
    await stream.aclose()  # type: ignore[attr-defined]


async def test_cancel_queued_job(make_queue: QueueFactory) -> None:
    queue = await make_queue()
    job_id, _ = await queue.submit(request(user=1))
    assert await queue.cancel(job_id)
    assert [e.kind for e in await follow(queue, job_id)] == ["cancelled"]
    assert await queue.position(job_id) is None
    assert await queue.active_jobs(1) == []
    assert (await queue.stats()).queued == 0
    assert not await queue.cancel("no-such-job")


async def test_cancel_running_job_stops_at_next_step(make_queue: QueueFactory) -> None:
    queue = await make_queue(painter=StubPainter(steps=200, scales=1, step_s=0.02))
    job_id, _ = await queue.submit(request())
    stream = queue.events(job_id).__aiter__()
    while (await next_event(stream)).kind != "progress":
        pass
    assert await queue.cancel(job_id)
    rest = [event async for event in stream]
    assert rest[-1].kind == "cancelled"
    steps = [e.step or 0 for e in rest if e.kind == "progress"]
    assert len(steps) < 100  # stopped long before the end
    job = await queue.get(job_id)
    assert job is not None and job.state == JobState.CANCELLED


@pytest.mark.parametrize(
    ("content", "reason"), [(b"FAIL", "corrupt_image"), (b"ERROR", "painter_error")]
)
async def test_painter_errors_fail_the_job_without_retry(
    make_queue: QueueFactory, content: bytes, reason: str
) -> None:
    queue = await make_queue(painter=StubPainter())
    job_id, _ = await queue.submit(request(content=content))
    events = await follow(queue, job_id)
    assert events[-1].kind == "failed" and events[-1].reason == reason
    job = await queue.get(job_id)
    assert job is not None and job.state == JobState.FAILED and job.attempts == 1
    assert job.error == reason


async def test_undelivered_until_acknowledged(make_queue: QueueFactory) -> None:
    queue = await make_queue(painter=StubPainter())
    done_id, _ = await queue.submit(request(user=1, content=b"one"))
    failed_id, _ = await queue.submit(request(user=2, content=b"FAIL"))
    await follow(queue, done_id)
    await follow(queue, failed_id)
    pending = {job.id: job for job in await queue.undelivered()}
    assert set(pending) == {done_id, failed_id}
    assert pending[done_id].result and pending[done_id].request.content == b"one"
    await queue.acknowledge(done_id)
    assert [job.id for job in await queue.undelivered()] == [failed_id]
    gone = await queue.get(done_id)  # retention 0: pictures deleted once delivered
    assert gone is not None and gone.result is None and gone.request.content == b""
    assert gone.request.styles[0].slug == "starry"


async def test_retention_keeps_pictures_after_delivery(make_queue: QueueFactory) -> None:
    queue = await make_queue(painter=StubPainter(), retention_s=3600)
    job_id, _ = await queue.submit(request(content=b"keep me"))
    await follow(queue, job_id)
    await queue.acknowledge(job_id)
    kept = await queue.get(job_id)
    assert kept is not None and kept.result and kept.request.content == b"keep me"
    assert await queue.undelivered() == []


async def test_forget_user_deletes_everything_and_cancels(make_queue: QueueFactory) -> None:
    queue = await make_queue(
        painter=StubPainter(steps=500, scales=1, step_s=0.02), limits=QueueLimits(per_user=3)
    )
    running, _ = await queue.submit(request(user=5))
    queued, _ = await queue.submit(request(user=5))
    other, _ = await queue.submit(request(user=6))
    stream = queue.events(running).__aiter__()
    while (await next_event(stream)).kind != "progress":
        pass
    await queue.forget(5)
    assert [e async for e in stream][-1].kind == "cancelled"
    assert await queue.get(running) is None and await queue.get(queued) is None
    assert await queue.active_jobs(5) == []
    assert all(job.request.user_id != 5 for job in await queue.undelivered())
    other_job = await queue.get(other)  # other users keep their jobs
    assert other_job is not None and other_job.state in (JobState.QUEUED, JobState.RUNNING)
    assert await queue.cancel(other)


async def test_stats_and_health(make_queue: QueueFactory) -> None:
    queue = await make_queue(painter=StubPainter(step_s=0.01))
    assert await queue.healthy()
    ids = [(await queue.submit(request(user=u, content=b"x%d" % u)))[0] for u in range(3)]
    failing, _ = await queue.submit(request(user=9, content=b"FAIL"))
    for job_id in [*ids, failing]:
        await follow(queue, job_id)
    stats = await queue.stats()
    assert (stats.queued, stats.running) == (0, 0)
    assert (stats.done_today, stats.failed_today) == (3, 1)
    assert stats.mean_run_s is not None and 0 < stats.mean_run_s < 5
    assert stats.mean_wait_s is not None and stats.mean_wait_s >= 0
    assert stats.workers_alive == 1


async def test_eta_follows_measured_run_times(make_queue: QueueFactory) -> None:
    queue = await make_queue(painter=StubPainter(steps=5, scales=1, step_s=0.02))
    job_id, _ = await queue.submit(request(user=1))
    await follow(queue, job_id)
    run_s = (await queue.stats()).mean_run_s
    assert run_s is not None and run_s >= 0.1
    await queue.submit(request(user=2, content=b"slow" + b"x"))  # keeps the painter busy
    late, _ = await queue.submit(request(user=3))
    stream = queue.events(late).__aiter__()
    first = await next_event(stream)
    if first.kind == "queued":  # a fresh measurement, not the 60 s default
        assert first.eta_s is not None and first.eta_s < 5
    await stream.aclose()  # type: ignore[attr-defined]


async def test_a_keyed_submit_is_made_once_and_never_refused(make_queue: QueueFactory) -> None:
    """The bot keys a job by the update that asked for it: a replayed update finds its job,
    even when the user is at their limit (the job that holds the limit is that very job)."""
    queue = await make_queue(limits=QueueLimits(per_user=1))
    first, position = await queue.submit(request(user=1), key="cq-1")
    again = await queue.submit(request(user=1, content=b"replayed"), key="cq-1")
    assert again == (first, position) and position == 1
    assert [job.id for job in await queue.active_jobs(1)] == [first]
    assert (await queue.stats()).queued == 1
    with pytest.raises(TooManyActiveJobs):
        await queue.submit(request(user=1), key="cq-2")  # another key is another job
    other, _ = await queue.submit(request(user=2))  # no key: every submit is a job
    assert other != first and len(await queue.active_jobs(2)) == 1


async def test_a_keyed_submit_finds_its_job_after_delivery(make_queue: QueueFactory) -> None:
    queue = await make_queue(painter=StubPainter())
    job_id, _ = await queue.submit(request(user=3), key="u:3:17")
    assert [e.kind for e in await follow(queue, job_id)][-1] == "done"
    await queue.acknowledge(job_id)
    assert await queue.submit(request(user=3), key="u:3:17") == (job_id, 0)  # not painted again
    assert await queue.undelivered() == [] and await queue.active_jobs(3) == []
    assert (await queue.stats()).done_today == 1


async def test_forget_frees_the_submit_keys_of_the_user(make_queue: QueueFactory) -> None:
    queue = await make_queue()
    job_id, _ = await queue.submit(request(user=4), key="cq-9")
    kept, _ = await queue.submit(request(user=5), key="cq-10")
    await queue.forget(4)
    fresh, position = await queue.submit(request(user=4), key="cq-9")
    assert fresh != job_id and position == 2  # behind user 5's job
    assert await queue.submit(request(user=5), key="cq-10") == (kept, 1)
