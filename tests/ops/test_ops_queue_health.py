"""Health and metrics wired to a real queue: the embedded backend (SQLite + painter thread) and,
where a redis-server binary exists, the Redis backend."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.observability import health
from engine.queue import JobQueue, JobRequest, StyleChoice, open_queue
from engine.queue.stub_painter import StubPainter
from tests.doubles.needs import redis_server_binary
from tests.doubles.queue_helpers import redis_available

ROOT = Path(__file__).resolve().parents[2]


async def fetch(base: str, path: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(base + path) as response:
        body = await (response.json() if path == "/healthz" else response.text())
        return response.status, body


def jobs_total(text: str, state: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "orsay_jobs_total" and sample.labels == {"state": state}:
                return float(sample.value)
    return 0.0


async def run_one_job(queue: JobQueue) -> str:
    job_id, _ = await queue.submit(
        JobRequest(user_id=1, chat_id=1, content=b"photo", styles=[StyleChoice(slug="monet")])
    )
    async with asyncio.timeout(20):
        async for event in queue.events(job_id):
            if event.terminal:
                return event.kind
    raise AssertionError("no terminal event")


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[JobQueue]:
    queue = open_queue(f"sqlite:///{tmp_path / 'q.sqlite3'}", painter=StubPainter())
    await queue.start()
    yield queue
    await queue.close()


async def test_embedded_queue_health_and_metrics(embedded: JobQueue) -> None:
    runner = await health.start_health_server(
        0, health.queue_check(embedded, report_device=True), host="127.0.0.1"
    )
    base = f"http://127.0.0.1:{health.bound_port(runner)}"
    try:
        status, body = await fetch(base, "/healthz")
        assert status == 200
        assert body["ok"] is True and body["queue"] == "ok" and body["workers_alive"] == 1
        assert body["device"] in ("cpu", "cuda")
        _, before = await fetch(base, "/metrics")
        assert await run_one_job(embedded) == "done"
        _, after = await fetch(base, "/metrics")
        assert jobs_total(after, "done") == jobs_total(before, "done") + 1
        assert jobs_total(after, "queued") == jobs_total(before, "queued") + 1
        assert "orsay_job_run_seconds_count" in after

        await embedded.close()  # the painter thread stops: the process is no longer healthy
        status, body = await fetch(base, "/healthz")
        assert status == 503 and body["ok"] is False
    finally:
        await runner.cleanup()


# -- Redis: `orsay worker` as a real process, the bot side in this process ----------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server on a free port. Skipped without the binary unless
    ORSAY_REQUIRE_REDIS=1 (CI sets it), which turns a missing binary into a failure."""
    redis_available()
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", ""]
    proc = subprocess.Popen(
        [redis_server_binary() or "redis-server", *args], stdout=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)


async def wait_healthy(base: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            status, body = await fetch(base, "/healthz")
            if status == 200:
                return dict(body)
        except aiohttp.ClientError:
            pass
        assert time.monotonic() < deadline, f"{base}/healthz never became healthy"
        await asyncio.sleep(0.2)


async def test_redis_worker_and_bot_health_and_metrics(redis_url: str) -> None:
    worker_port = free_port()
    env = {**os.environ, "ORSAY_METRICS_PORT": str(worker_port), "ORSAY_LOG_LEVEL": "WARNING"}
    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "orsay", "worker", "--queue", redis_url,
        "--stub-painter", "--stub-step-s", "0.01",
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    queue = open_queue(redis_url)
    await queue.start()
    runner = await health.start_health_server(0, health.queue_check(queue), host="127.0.0.1")
    bot_base = f"http://127.0.0.1:{health.bound_port(runner)}"
    worker_base = f"http://127.0.0.1:{worker_port}"
    try:
        body = await wait_healthy(worker_base)
        assert body["queue"] == "ok" and body["device"] in ("cpu", "cuda")
        body = await wait_healthy(bot_base, timeout_s=30)  # the worker's heartbeat arrived
        assert body["workers_alive"] >= 1

        assert await run_one_job(queue) == "done"
        deadline = time.monotonic() + 10  # the worker counts right after it publishes `done`
        _, text = await fetch(worker_base, "/metrics")
        while jobs_total(text, "done") == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            _, text = await fetch(worker_base, "/metrics")
        assert jobs_total(text, "done") == 1  # counted by the worker process that painted it
        assert "orsay_job_wait_seconds_count 1.0" in text

        worker.send_signal(signal.SIGTERM)  # graceful: the worker exits on its own, status 0
        assert await asyncio.wait_for(worker.wait(), 30) == 0
        status, body = await fetch(bot_base, "/healthz")
        deadline = time.monotonic() + 40  # the worker's heartbeat key expires
        while status == 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            status, body = await fetch(bot_base, "/healthz")
        assert status == 503 and body["queue"] == "ok" and body["workers_alive"] == 0
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        await runner.cleanup()
        await queue.close()
