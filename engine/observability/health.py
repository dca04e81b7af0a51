"""`/healthz` and `/metrics` for `orsay bot` and `orsay worker`, on `ORSAY_METRICS_PORT`.

Docker's HEALTHCHECK and orchestrators poll `/healthz`; Prometheus scrapes `/metrics`. Both run
on the caller's event loop in a tiny aiohttp app so they cost nothing when nobody asks. The
health answer comes from a `check()` coroutine the caller supplies (its queue, its worker), so
this module knows nothing about the queue backends.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from engine.observability.logs import redact

HealthCheck = Callable[[], Awaitable[dict[str, Any]]]
CHECK_TIMEOUT_S = 5.0  # Docker's HEALTHCHECK gives up after 10 s by default; answer before that

log = logging.getLogger(__name__)


async def _run_check(check: HealthCheck) -> dict[str, Any]:
    """A check that raises or hangs is itself a failed health check, with a reason, not a 500."""
    try:
        result = await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return {"ok": False, "error": f"health check timed out after {CHECK_TIMEOUT_S:g} s"}
    except Exception as exc:
        log.warning("health check failed: %s: %s", type(exc).__name__, exc)
        return {"ok": False, "error": redact(f"{type(exc).__name__}: {exc}")}
    return dict(result)


async def start_health_server(
    port: int, check: HealthCheck, host: str = "0.0.0.0"
) -> web.AppRunner:
    """Serve `GET /healthz` (200 `{"ok": true, …}` or 503 with details) and `GET /metrics`
    (Prometheus text). Port 0 picks a free port (see `bound_port`). Stop with
    `await runner.cleanup()`."""

    async def healthz(_: web.Request) -> web.Response:
        details = await _run_check(check)
        status = 200 if details.get("ok") is True else 503
        body = redact(json.dumps(details, default=str, sort_keys=True))
        return web.Response(status=status, text=body, content_type="application/json")

    async def metrics(_: web.Request) -> web.Response:
        response = web.Response(body=generate_latest(REGISTRY))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)  # a probe every 30 s is not news
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("health and metrics on http://%s:%d/healthz", host, bound_port(runner))
    return runner


def bound_port(runner: web.AppRunner) -> int:
    """The port a started runner listens on (useful after asking for port 0)."""
    return int(runner.addresses[0][1])


def device_status() -> dict[str, Any]:
    """GPU visible or CPU mode, for workers' health. Imports torch lazily (the bot may not)."""
    import torch

    if torch.cuda.is_available():
        return {"device": "cuda", "gpu": torch.cuda.get_device_name(0)}
    return {"device": "cpu", "gpu": None}


def queue_check(
    queue: Any, *, expect_workers: bool = True, report_device: bool = False
) -> HealthCheck:
    """Build a `check()` from a `JobQueue`: ok when `healthy()` and, if `expect_workers`, at least
    one worker is alive. The details (queue counts, workers, device) help an operator at a glance.
    """

    async def check() -> dict[str, Any]:
        details: dict[str, Any] = {}
        try:
            reachable = bool(await queue.healthy())
        except Exception as exc:
            reachable = False
            details["error"] = redact(f"{type(exc).__name__}: {exc}")
        details["queue"] = "ok" if reachable else "unreachable"
        workers_ok = not expect_workers
        if reachable:
            stats = await queue.stats()
            details.update(
                queued=stats.queued, running=stats.running, workers_alive=stats.workers_alive
            )
            workers_ok = workers_ok or stats.workers_alive > 0
        if report_device:
            details.update(device_status())
        details["ok"] = reachable and workers_ok
        return details

    return check


def all_of(*checks: HealthCheck) -> HealthCheck:
    """One `check()` from several (the bot's: its queue and its updates): ok when every one is,
    with every one's details side by side (later ones win a clash of names)."""

    async def check() -> dict[str, Any]:
        results = [await one() for one in checks]
        details: dict[str, Any] = {}
        for result in results:
            details.update(result)
        details["ok"] = all(result.get("ok") is True for result in results)
        return details

    return check


def probe(port: int | None, timeout_s: float = 8.0) -> int:
    """Exit status for Docker's HEALTHCHECK: 0 when `/healthz` on `port` (ORSAY_METRICS_PORT)
    says ok.

    Uses only the standard library so the probe stays cheap to start every 30 s. With the port
    unset the operator turned health off, so there is nothing to probe: 0 with a note."""
    import urllib.error
    import urllib.request

    if port is None:
        print("ORSAY_METRICS_PORT is not set: health endpoint off, nothing to probe")
        return 0
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            print(response.read().decode(errors="replace"))
            return 0
    except urllib.error.HTTPError as exc:  # 503: the body says what is wrong
        print(exc.read().decode(errors="replace"))
    except OSError as exc:
        print(f"{url}: {exc}")
    return 1


def main() -> int:
    """`python -m engine.observability.health`: the probe on this process's settings."""
    from engine.settings import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc)
        return 1
    return probe(settings.metrics_port)


if __name__ == "__main__":
    raise SystemExit(main())
