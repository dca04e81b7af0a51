"""Batches, one behaviour on both backends: a worker whose painter batches takes up to `batch`
compatible jobs at once, in fair order, and every job still ends on its own."""

from __future__ import annotations

import asyncio

import pytest

from engine.queue import JobEvent, JobOptions, JobQueue, JobRequest, JobState, QueueLimits
from engine.queue.batches import LOOKAHEAD
from engine.queue.stub_painter import result_colour
from tests.doubles.batch_painters import BatchingPainter
from tests.doubles.queue_helpers import QueueFactory
from tests.engine.queue.test_queue_contract import close_to, colour_of, follow, next_event


async def watch(queue: JobQueue, ids: list[str]) -> list[asyncio.Task[list[JobEvent]]]:
    """Followers already listening (each has heard its `queued` replay): they hear every event
    of the jobs from now on, however fast the painter is."""

    async def rest(stream: object, first: JobEvent) -> list[JobEvent]:
        return [first] + [event async for event in stream]  # type: ignore[attr-defined]

    tasks = []
    for job_id in ids:
        stream = queue.events(job_id).__aiter__()
        first = await next_event(stream)
        tasks.append(asyncio.create_task(asyncio.wait_for(rest(stream, first), 20)))
    return tasks


def job(user: int, content: bytes, size: int = 384) -> JobRequest:
    return JobRequest(user, user, content, [], JobOptions(size=size))


async def held(queue: JobQueue, painter: BatchingPainter) -> str:
    """A job that occupies the worker until `painter.release` is set: what the test submits
    next waits in line, all of it there when the worker looks again."""
    job_id, _ = await queue.submit(job(999, b"HOLD"))
    stream = queue.events(job_id).__aiter__()
    while (await next_event(stream)).kind != "started":
        pass
    await stream.aclose()  # type: ignore[attr-defined]
    return job_id


async def submit_all(queue: JobQueue, jobs: list[JobRequest]) -> list[str]:
    return [(await queue.submit(request))[0] for request in jobs]


async def test_compatible_jobs_are_painted_together_up_to_the_limit(
    make_queue: QueueFactory,
) -> None:
    painter = BatchingPainter(batch=3, steps=2, scales=2)
    queue = await make_queue(painter=painter)
    hold = await held(queue, painter)
    jobs = [job(user, b"photo %d" % user) for user in range(1, 6)]
    ids = await submit_all(queue, jobs)
    followers = await watch(queue, ids)
    painter.release.set()
    for job_id, request, follower in zip(ids, jobs, followers, strict=True):
        events = await follower
        assert [e.kind for e in events if e.terminal] == ["done"]
        progress = [(e.scale, e.step) for e in events if e.kind == "progress"]
        assert progress == [(s, t) for s in (1, 2) for t in (1, 2)]  # its own, every one
        assert [e.job_id for e in events] == [job_id] * len(events)
        assert close_to(colour_of(events[-1].result or b""), result_colour(request))
        record = await queue.get(job_id)
        assert record is not None and record.state == JobState.DONE and record.attempts == 1
    assert (await follow(queue, hold))[-1].kind == "done"
    contents = [request.content for request in jobs]
    assert painter.batches == [[b"HOLD"], contents[:3], contents[3:]]


async def test_incompatible_jobs_are_not_batched_together(make_queue: QueueFactory) -> None:
    painter = BatchingPainter(batch=4)
    queue = await make_queue(painter=painter)
    await held(queue, painter)
    sizes = {b"small 1": 256, b"large 1": 384, b"small 2": 256, b"large 2": 384}
    ids = await submit_all(queue, [job(u, c, s) for u, (c, s) in enumerate(sizes.items(), 1)])
    painter.release.set()
    for job_id in ids:
        assert (await follow(queue, job_id))[-1].kind == "done"
    assert painter.batches[1:] == [[b"small 1", b"small 2"], [b"large 1", b"large 2"]]


async def test_fair_order_is_kept_and_the_head_goes_first(make_queue: QueueFactory) -> None:
    painter = BatchingPainter(batch=2)
    queue = await make_queue(painter=painter, limits=QueueLimits(per_user=3))
    await held(queue, painter)
    ids = await submit_all(
        queue, [job(1, b"1a"), job(1, b"1b"), job(1, b"1c"), job(2, b"2a"), job(3, b"3a")]
    )
    painter.release.set()
    for job_id in ids:
        assert (await follow(queue, job_id))[-1].kind == "done"
    # The line is 1a 2a 3a 1b 1c: 1a is the head. Once it has left the line, 1b is user 1's
    # first waiting job, submitted before 2a, so it comes next, as it would for a worker taking
    # one job at a time; then 1c before 2a, for the same reason, and 3a last.
    assert painter.batches[1:] == [[b"1a", b"1b"], [b"1c", b"2a"], [b"3a"]]


async def test_only_a_few_places_down_the_line_are_looked_at(make_queue: QueueFactory) -> None:
    painter = BatchingPainter(batch=2)
    queue = await make_queue(painter=painter, limits=QueueLimits(max_queue=20))
    await held(queue, painter)
    behind = LOOKAHEAD * painter.batch  # places behind the head the worker looks at
    line = [job(1, b"head", 256)]
    line += [job(u, b"other %d" % u, 384) for u in range(2, 2 + behind)]
    line += [job(99, b"far", 256)]  # compatible with the head, but out of sight
    ids = await submit_all(queue, line)
    painter.release.set()
    for job_id in ids:
        assert (await follow(queue, job_id))[-1].kind == "done"
    assert painter.batches[1] == [b"head"]
    assert painter.batches[-1] == [b"far"]
    assert all(len(batch) == 2 for batch in painter.batches[2:-1])


async def test_cancelling_one_job_of_a_batch_cancels_only_it(make_queue: QueueFactory) -> None:
    painter = BatchingPainter(batch=2, steps=100, scales=1, step_s=0.02)
    queue = await make_queue(painter=painter)
    await held(queue, painter)
    cancelled, kept = await submit_all(queue, [job(1, b"cancel me"), job(2, b"keep me")])
    follower = asyncio.create_task(follow(queue, kept, timeout=30))
    stream = queue.events(cancelled).__aiter__()
    painter.release.set()
    while (await next_event(stream)).kind != "progress":
        pass
    assert await queue.cancel(cancelled)
    rest = [event async for event in stream]
    assert rest[-1].kind == "cancelled"
    assert len([e for e in rest if e.kind == "progress"]) < 90  # stopped long before the end
    events: list[JobEvent] = await follower
    assert events[-1].kind == "done" and events[-1].result
    assert [e.step for e in events if e.kind == "progress"][-1] == 100  # it went on to the end
    assert painter.batches[1] == [b"cancel me", b"keep me"]
    states = [(await queue.get(i)) for i in (cancelled, kept)]
    assert [s.state if s else None for s in states] == [JobState.CANCELLED, JobState.DONE]


@pytest.mark.parametrize(
    ("content", "reason"), [(b"FAIL", "corrupt_image"), (b"ERROR", "painter_error")]
)
async def test_a_failing_job_in_a_batch_fails_alone(
    make_queue: QueueFactory, content: bytes, reason: str
) -> None:
    painter = BatchingPainter(batch=3)
    queue = await make_queue(painter=painter)
    await held(queue, painter)
    ids = await submit_all(queue, [job(1, b"fine 1"), job(2, content), job(3, b"fine 2")])
    painter.release.set()
    ends = [(await follow(queue, job_id))[-1] for job_id in ids]
    expected = [("done", None), ("failed", reason), ("done", None)]
    assert [(e.kind, e.reason) for e in ends] == expected
    assert painter.batches[1:] == [[b"fine 1", content, b"fine 2"]]  # painted together
    for job_id in ids:
        record = await queue.get(job_id)
        assert record is not None and record.attempts == 1  # a failure is not retried


async def test_each_job_of_a_batch_has_its_own_timeout(make_queue: QueueFactory) -> None:
    painter = BatchingPainter(batch=2, steps=500, scales=1, step_s=0.02)
    queue = await make_queue(painter=painter, job_timeout_s=0.5)
    await held(queue, painter)
    ids = await submit_all(queue, [job(1, b"slow 1"), job(2, b"slow 2")])
    painter.release.set()
    ends = [(await follow(queue, job_id))[-1] for job_id in ids]
    assert [(e.kind, e.reason) for e in ends] == [("failed", "timeout")] * 2
    assert painter.batches[1] == [b"slow 1", b"slow 2"]
