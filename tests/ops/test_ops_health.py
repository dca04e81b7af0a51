"""/healthz and /metrics answer as Docker and Prometheus expect, and the HEALTHCHECK probe turns
them into an exit status."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from engine.observability import health, metrics
from engine.queue.seam import QueueStats
from engine.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
Check = Callable[[], Awaitable[dict[str, Any]]]
Serve = Callable[[Check], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a health server on a free port; return its base URL; clean up afterwards."""
    runners: list[web.AppRunner] = []

    async def start(check: Check) -> str:
        runner = await health.start_health_server(0, check, host="127.0.0.1")
        runners.append(runner)
        return f"http://127.0.0.1:{health.bound_port(runner)}"

    yield start
    for runner in runners:
        await runner.cleanup()


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def test_healthy_check_gives_200_with_details(serve: Serve) -> None:
    async def ok() -> dict[str, Any]:
        return {"ok": True, "queue": "ok", "workers_alive": 1}

    status, ctype, body = await get(await serve(ok) + "/healthz")
    assert status == 200 and ctype.startswith("application/json")
    assert body == '{"ok": true, "queue": "ok", "workers_alive": 1}'


async def test_failing_raising_and_hanging_checks_give_503(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def down() -> dict[str, Any]:
        return {"ok": False, "queue": "unreachable"}

    async def boom() -> dict[str, Any]:
        raise ConnectionError("redis://:pw@redis:6379 refused by 7012345678:" + "A" * 35)

    async def hang() -> dict[str, Any]:
        await asyncio.sleep(30)
        return {"ok": True}

    monkeypatch.setattr(health, "CHECK_TIMEOUT_S", 0.2)
    status, _, body = await get(await serve(down) + "/healthz")
    assert status == 503 and '"queue": "unreachable"' in body
    status, _, body = await get(await serve(boom) + "/healthz")
    assert status == 503 and "ConnectionError" in body
    assert "A" * 35 not in body  # token-shaped text in an error is redacted
    status, _, body = await get(await serve(hang) + "/healthz")
    assert status == 503 and "timed out" in body


async def test_metrics_in_prometheus_text_format(serve: Serve) -> None:
    async def ok() -> dict[str, Any]:
        return {"ok": True}

    url = await serve(ok) + "/metrics"
    before = _sample(await get(url), "orsay_jobs_total", {"state": "done"})
    metrics.JOBS.labels(state="done").inc()
    metrics.STEP_SECONDS.labels(size="256").observe(0.3)
    metrics.TELEGRAM_ERRORS.labels(kind="RetryAfter").inc()
    status, ctype, body = await get(url)
    assert status == 200 and ctype.startswith("text/plain; version=")
    names = {family.name for family in text_string_to_metric_families(body)}
    assert {
        "orsay_jobs",
        "orsay_queue_length",
        "orsay_running_jobs",
        "orsay_job_wait_seconds",
        "orsay_job_run_seconds",
        "orsay_engine_step_seconds",
        "orsay_telegram_errors",
    } <= names
    assert _sample((status, ctype, body), "orsay_jobs_total", {"state": "done"}) == before + 1
    assert _sample((status, ctype, body), "orsay_engine_step_seconds_count", {"size": "256"}) >= 1


def _sample(response: tuple[int, str, str], name: str, labels: dict[str, str]) -> float:
    for family in text_string_to_metric_families(response[2]):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


class FakeQueue:
    def __init__(self, reachable: bool | Exception, workers: int) -> None:
        self.reachable, self.workers = reachable, workers

    async def healthy(self) -> bool:
        if isinstance(self.reachable, Exception):
            raise self.reachable
        return self.reachable

    async def stats(self) -> QueueStats:
        return QueueStats(3, 1, 10, 0, 2.0, 30.0, self.workers)


async def test_queue_check_needs_reachable_queue_and_a_live_worker() -> None:
    ok = await health.queue_check(FakeQueue(True, 2), report_device=True)()
    assert ok["ok"] is True and ok["queued"] == 3 and ok["workers_alive"] == 2
    assert ok["device"] in ("cuda", "cpu")
    no_worker = await health.queue_check(FakeQueue(True, 0))()
    assert no_worker["ok"] is False and no_worker["workers_alive"] == 0
    bot_side = await health.queue_check(FakeQueue(True, 0), expect_workers=False)()
    assert bot_side["ok"] is True
    down = await health.queue_check(FakeQueue(OSError("connection refused"), 1))()
    assert down == {"ok": False, "queue": "unreachable", "error": "OSError: connection refused"}


def test_device_status_matches_torch() -> None:
    import torch

    status = health.device_status()
    assert status["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert (status["gpu"] is None) == (not torch.cuda.is_available())


def test_metrics_port_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORSAY_METRICS_PORT", raising=False)
    assert load_settings().metrics_port is None
    monkeypatch.setenv("ORSAY_METRICS_PORT", " 9100 ")
    assert load_settings().metrics_port == 9100
    for bad in ("http", "70000"):
        monkeypatch.setenv("ORSAY_METRICS_PORT", bad)
        with pytest.raises(ValueError, match="ORSAY_METRICS_PORT"):
            load_settings()


async def test_healthcheck_probe_exit_status(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact command the Dockerfile's HEALTHCHECK runs, as a subprocess."""
    state = {"ok": True}

    async def check() -> dict[str, Any]:
        return dict(state)

    port = (await serve(check)).rsplit(":", 1)[1]

    async def run_probe(env_port: str | None) -> int:
        env = {k: v for k, v in os.environ.items() if k != "ORSAY_METRICS_PORT"}
        if env_port is not None:
            env["ORSAY_METRICS_PORT"] = env_port
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "engine.observability.health",
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        return await proc.wait()

    assert await run_probe(port) == 0
    state["ok"] = False
    assert await run_probe(port) == 1
    assert await run_probe(None) == 0  # health turned off by the operator: nothing to probe
    monkeypatch.setenv("ORSAY_METRICS_PORT", port)
    assert await asyncio.to_thread(health.probe, load_settings().metrics_port) == 1
