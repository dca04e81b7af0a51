"""`orsay worker`: paint jobs from the Redis queue; run one per GPU, on as many machines as needed.

The network is loaded once at start. SIGTERM/SIGINT stop taking jobs; the running job gets
ORSAY_SHUTDOWN_GRACE seconds (default 30) to finish and is otherwise handed back to the queue,
where another worker (or this one, restarted) paints it. With ORSAY_METRICS_PORT set, /healthz and
/metrics are served on that port.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from typing import Any

log = logging.getLogger("orsay.worker")


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker",
        help="paint jobs from a Redis queue (ORSAY_QUEUE=redis://...)",
        description=__doc__,
    )
    parser.add_argument(
        "--queue", default=os.environ.get("ORSAY_QUEUE", ""), help="redis://host:port/db"
    )
    parser.add_argument("--model", default=os.environ.get("ORSAY_MODEL", "vgg19"))
    parser.add_argument(
        "--weights", default=os.environ.get("ORSAY_VGG_WEIGHTS", "torchvision"),
        help="torchvision | random | path to a state_dict",
    )  # fmt: skip
    parser.add_argument("--device", default=os.environ.get("ORSAY_DEVICE", "auto"))
    parser.add_argument(
        "--max-size", type=int, default=int(os.environ.get("ORSAY_MAX_SIZE") or 512),
        help="cap on the long side of results, px",
    )  # fmt: skip
    parser.add_argument(
        "--lease", type=float, default=_env_float("ORSAY_WORKER_LEASE", 10.0),
        help="seconds after which a dead worker's job is retried elsewhere",
    )  # fmt: skip
    parser.add_argument(
        "--job-timeout", type=float, default=_env_float("ORSAY_JOB_TIMEOUT", 3600.0)
    )
    parser.add_argument(
        "--poll", type=float, default=_env_float("ORSAY_WORKER_POLL", 0.2),
        help="seconds between looks at the queue when idle",
    )  # fmt: skip
    parser.add_argument(
        "--stub-painter", action="store_true", help="fake painter for tests and benchmarks"
    )
    parser.add_argument("--stub-steps", type=int, default=4)
    parser.add_argument("--stub-step-s", type=float, default=0.0)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.queue.startswith(("redis://", "rediss://", "unix://")):
        print("orsay worker needs a Redis queue: --queue redis://host:6379/0 or ORSAY_QUEUE.")
        print("(The embedded queue paints inside `orsay bot`; it needs no worker.)")
        return 2
    from engine.observability.logs import configure_logging

    configure_logging()
    from engine.queue.redis_backend.worker import WorkerConfig
    from engine.queue.seam import Painter

    painter: Painter
    if args.stub_painter:
        from engine.queue.stub_painter import StubPainter

        painter = StubPainter(steps=args.stub_steps, step_s=args.stub_step_s)
    else:
        from engine.queue.painter import make_engine_painter

        painter = make_engine_painter(args.model, args.weights, args.device, args.max_size)
    config = WorkerConfig(
        url=args.queue,
        lease_s=args.lease,
        job_timeout_s=args.job_timeout,
        grace_s=_env_float("ORSAY_SHUTDOWN_GRACE", 30.0),
        poll_s=args.poll,
    )
    asyncio.run(serve(config, painter))
    return 0


async def serve(config: Any, painter: Any) -> None:
    """Run the worker until SIGTERM/SIGINT: it stops taking jobs, lets the running one finish
    within the grace period or hands it back; while Redis is away it waits and retries."""
    from engine.queue.redis_backend.worker import RedisWorker

    health = await _start_health(config.url)
    worker = RedisWorker(config, painter)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        if health is not None:
            await health.cleanup()


async def _start_health(url: str) -> Any:
    from engine.observability.health import (
        metrics_port_from_env,
        queue_check,
        start_health_server,
    )
    from engine.queue.redis_backend import RedisQueue

    port = metrics_port_from_env()
    if port is None:
        return None
    queue = RedisQueue(url)
    await queue.start()
    check = queue_check(queue, expect_workers=False, report_device=True)
    return await start_health_server(port, check)
