"""Health and metrics wired to a real queue: the embedded backend (SQLite + painter thread) and,
where a redis-server binary exists, the Redis backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from engine.observability import health
from engine.queue import JobQueue, JobRequest, StyleChoice, open_queue
from engine.queue.stub_painter import StubPainter


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
