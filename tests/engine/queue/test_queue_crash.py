"""Durability: really SIGKILL the process that paints, restart it, and check that every accepted
job is completed or reported failed, exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.queue import JobEvent, JobQueue, JobState, QueueLimits, QueueUnavailable, open_queue
from engine.queue.redis_backend.worker import WorkerConfig, start_worker_task
from engine.queue.stub_painter import StubPainter
from tests.doubles.queue_helpers import RedisServer, request

HERE = Path(__file__).parent
ROOT = HERE.parents[2]


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "ORSAY_LOG_LEVEL": "WARNING"}


def spawn_embedded(data_dir: Path, step_s: float, *contents: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "embedded_child.py"), str(data_dir), str(step_s), *contents],
        stdout=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


def read_until(proc: subprocess.Popen[str], prefix: str, count: int = 1) -> list[str]:
    """Words after `prefix` on the child's stdout, until `count` such lines were seen."""
    found: list[str] = []
    assert proc.stdout is not None
    while len(found) < count:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"child exited ({proc.wait()}) before printing {prefix!r}")
        if line.startswith(prefix):
            found.append(line.split()[1])
    return found


def kill9(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL


async def outcome(queue: JobQueue, job_id: str, timeout: float = 30.0) -> list[JobEvent]:
    async def collect() -> list[JobEvent]:
        return [e async for e in queue.events(job_id)]

    return await asyncio.wait_for(collect(), timeout)


async def delivered_once(queue: JobQueue, ids: list[str]) -> dict[str, int]:
    """Every job ends `done`, once, and waits to be delivered (none lost); its tries, by id."""
    for job_id in ids:
        events = await outcome(queue, job_id, timeout=60)
        assert [e.kind for e in events if e.terminal] == ["done"]
    jobs = {job.id: job for job in await queue.undelivered()}
    assert set(jobs) == set(ids)
    assert all(job.state == JobState.DONE for job in jobs.values())
    return {job_id: jobs[job_id].attempts for job_id in ids}


async def test_embedded_kill9_mid_job_then_restart(tmp_path: Path) -> None:
    child = spawn_embedded(tmp_path, 0.05, "one", "two", "three")
    ids = read_until(child, "submitted", 3)
    read_until(child, "started")  # a job is being painted, two are waiting
    kill9(child)

    queue = open_queue(None, painter=StubPainter(), data_dir=tmp_path)
    await queue.start()
    try:
        assert sorted((await delivered_once(queue, ids)).values()) == [1, 1, 2]
        for job_id in ids:
            await queue.acknowledge(job_id)
        assert await queue.undelivered() == []
    finally:
        await queue.close()


async def test_embedded_job_that_kills_every_worker_is_reported(tmp_path: Path) -> None:
    child = spawn_embedded(tmp_path, 0.0, "CRASH me", "innocent")
    crash_id, innocent_id = read_until(child, "submitted", 2)
    assert child.wait(20) == -signal.SIGKILL  # the painter took the process down
    for _ in range(2):  # restarts retry it, and it kills them too
        assert spawn_embedded(tmp_path, 0.0).wait(20) == -signal.SIGKILL

    queue = open_queue(None, painter=StubPainter(), data_dir=tmp_path)
    await queue.start()
    try:
        crashed = await outcome(queue, crash_id)
        assert [(e.kind, e.reason) for e in crashed] == [("failed", "worker_died")]
        job = await queue.get(crash_id)
        assert job is not None and job.attempts == QueueLimits().max_attempts
        assert (await outcome(queue, innocent_id))[-1].kind == "done"
    finally:
        await queue.close()


# -- Redis: `orsay worker` processes ------------------------------------------------------------


def spawn_worker(
    url: str, *extra: str, grace: float = 30, painter: str | None = None
) -> subprocess.Popen[str]:
    """`orsay worker` with the stub painter, or with `painter` (an ORSAY_PAINTER spec)."""
    env = {**child_env(), "ORSAY_SHUTDOWN_GRACE": str(grace)}
    cmd = [sys.executable, "-m", "orsay", "worker", "--queue", url]
    if painter is None:
        cmd.append("--stub-painter")
    else:
        env["ORSAY_PAINTER"] = painter
    return subprocess.Popen([*cmd, *extra], env=env, text=True, stderr=subprocess.DEVNULL)


async def wait_for_progress(queue: JobQueue, job_id: str) -> None:
    async def first() -> None:
        async for event in queue.events(job_id):
            if event.kind == "progress":
                return

    await asyncio.wait_for(first(), 30)


async def test_redis_worker_kill9_mid_job_then_restart(
    redis_server: RedisServer, workers: list[subprocess.Popen[str]]
) -> None:
    queue = open_queue(redis_server.url)
    await queue.start()
    try:
        ids = [(await queue.submit(request(user=u, content=b"job%d" % u)))[0] for u in range(3)]
        slow = ("--stub-steps", "10", "--stub-step-s", "0.05", "--lease", "1")
        workers.append(spawn_worker(redis_server.url, *slow))
        await wait_for_progress(queue, ids[0])
        kill9(workers[0])
        workers.append(spawn_worker(redis_server.url, *slow))
        assert await delivered_once(queue, ids) == {ids[0]: 2, ids[1]: 1, ids[2]: 1}
    finally:
        await queue.close()


async def test_redis_job_that_kills_every_worker_is_reported(
    redis_server: RedisServer, workers: list[subprocess.Popen[str]]
) -> None:
    queue = open_queue(redis_server.url)
    await queue.start()
    try:
        crash_id, _ = await queue.submit(request(user=1, content=b"CRASH"))
        innocent_id, _ = await queue.submit(request(user=2, content=b"fine"))
        deadline = time.monotonic() + 60
        while (job := await queue.get(crash_id)) and job.state not in (JobState.FAILED,):
            assert time.monotonic() < deadline, "the crashing job was retried forever"
            if not workers or workers[-1].poll() is not None:
                workers.append(spawn_worker(redis_server.url, "--lease", "0.5"))
            await asyncio.sleep(0.1)
        assert job is not None and job.error == "worker_died"
        assert job.attempts == QueueLimits().max_attempts
        assert len(workers) == QueueLimits().max_attempts + 1  # 3 died, the 4th reported it
        assert (await outcome(queue, innocent_id))[-1].kind == "done"
    finally:
        await queue.close()


async def test_redis_sigterm_hands_the_running_job_back(
    redis_server: RedisServer, workers: list[subprocess.Popen[str]]
) -> None:
    queue = open_queue(redis_server.url)
    await queue.start()
    try:
        job_id, _ = await queue.submit(request(user=1))
        slow = ("--stub-steps", "100", "--stub-step-s", "0.05")
        workers.append(spawn_worker(redis_server.url, *slow, grace=0.5))
        await wait_for_progress(queue, job_id)
        workers[0].send_signal(signal.SIGTERM)
        assert workers[0].wait(20) == 0  # it stopped after the grace period, cleanly
        job = await queue.get(job_id)
        assert job is not None and job.state == JobState.QUEUED and job.attempts == 0
        workers.append(spawn_worker(redis_server.url, "--stub-steps", "2"))
        events = await outcome(queue, job_id)
        assert events[-1].kind == "done"
        job = await queue.get(job_id)
        assert job is not None and job.attempts == 1  # the hand-back did not cost a try
    finally:
        await queue.close()


async def test_redis_down_refuses_fast_and_loses_nothing(redis_server: RedisServer) -> None:
    queue = open_queue(redis_server.url)
    await queue.start()
    handle = None
    try:
        accepted, _ = await queue.submit(request(user=1, content=b"accepted"))
        follower = asyncio.create_task(outcome(queue, accepted, timeout=60))
        await asyncio.sleep(0.2)
        redis_server.stop()
        started = time.monotonic()
        with pytest.raises(QueueUnavailable):
            await queue.submit(request(user=2))
        assert time.monotonic() - started < 3  # a clear refusal, not a hang
        assert not await queue.healthy()
        redis_server.start()  # same port, same append-only file
        handle = await start_worker_task(WorkerConfig(url=redis_server.url), StubPainter())
        events = await follower  # the follower reconnected by itself
        assert events[-1].kind == "done" and events[-1].result
        assert await queue.healthy()
        job = await queue.get(accepted)
        assert job is not None and job.state == JobState.DONE
    finally:
        if handle is not None:
            await handle.close()
        await queue.close()


async def test_redis_worker_serves_health_and_metrics(
    redis_server: RedisServer, workers: list[subprocess.Popen[str]]
) -> None:
    import json
    import urllib.request

    from tests.doubles.queue_helpers import free_port

    port = free_port()
    env_port = {"ORSAY_METRICS_PORT": str(port)}
    queue = open_queue(redis_server.url)
    await queue.start()
    try:
        cmd = [sys.executable, "-m", "orsay", "worker", "--queue", redis_server.url]
        workers.append(
            subprocess.Popen([*cmd, "--stub-painter"], env={**child_env(), **env_port}, text=True)
        )
        job_id, _ = await queue.submit(request())
        assert (await outcome(queue, job_id))[-1].kind == "done"

        def get(path: str) -> tuple[int, str]:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
                return reply.status, reply.read().decode()

        status, body = await asyncio.to_thread(get, "/healthz")
        health = json.loads(body)
        assert status == 200 and health["ok"] is True and health["queue"] == "ok"
        status, text = await asyncio.to_thread(get, "/metrics")
        assert 'orsay_jobs_total{state="done"} 1.0' in text
        assert "orsay_job_run_seconds_count 1.0" in text
    finally:
        await queue.close()


async def test_embedded_close_hands_the_running_job_back(tmp_path: Path) -> None:
    painter = StubPainter(steps=200, step_s=0.02)
    queue = open_queue(None, painter=painter, data_dir=tmp_path, shutdown_grace_s=0.2)
    await queue.start()
    job_id, _ = await queue.submit(request())
    async for event in queue.events(job_id):
        if event.kind == "progress":
            break
    started = time.monotonic()
    await queue.close()  # the bot stopping: the job is interrupted after the grace period
    assert time.monotonic() - started < 5

    queue = open_queue(None, painter=StubPainter(), data_dir=tmp_path)
    await queue.start()
    try:
        assert (await outcome(queue, job_id))[-1].kind == "done"
        job = await queue.get(job_id)
        assert job is not None and job.attempts == 1  # the interrupted try was not counted
    finally:
        await queue.close()
