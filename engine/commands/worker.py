"""`orsay worker`: paint jobs from the Redis queue; run one per GPU, on as many machines as needed.

The engine is warmed up once at start. Each worker paints up to ORSAY_BATCH (`--batch`)
compatible jobs at once, in fair order (default: 1 on CPU, more on CUDA). SIGTERM/SIGINT stop
taking jobs; the running jobs get ORSAY_SHUTDOWN_GRACE seconds (default 30) to finish and are
otherwise handed back to the queue, where another worker (or this one, restarted) paints them.
With ORSAY_METRICS_PORT set, /healthz and /metrics are served on that port. A worker that cannot
start (no Redis queue named, a device that is not there, weights that do not load) says why on
stderr and exits non-zero before it takes a job.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any, get_args

from engine.commands.stylize import _device
from engine.errors import OrsayError
from engine.options import ModelName
from engine.settings import DEVICE_NAMES, Settings, is_redis_url

log = logging.getLogger("orsay.worker")


def register(subparsers: Any, settings: Settings) -> None:
    """Flags default to the settings (ORSAY_QUEUE, ORSAY_MODEL, ...), so either way works."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "worker",
        help="paint jobs from a Redis queue (ORSAY_QUEUE=redis://...)",
        description=__doc__,
    )
    parser.add_argument("--queue", default=settings.queue_url or "", help="redis://host:port/db")
    parser.add_argument("--model", choices=get_args(ModelName), default=settings.model)
    parser.add_argument(
        "--weights", default=settings.weights, help="torchvision | random | path to a state_dict"
    )
    parser.add_argument("--device", type=_device, default=settings.device, help=DEVICE_NAMES)
    parser.add_argument(
        "--max-size", type=int, default=settings.max_size,
        help="cap on the long side of results, px",
    )  # fmt: skip
    parser.add_argument(
        "--lease", type=float, default=settings.worker_lease_s,
        help="seconds after which a dead worker's job is retried elsewhere",
    )  # fmt: skip
    parser.add_argument(
        "--batch", type=int, default=settings.batch,
        help="most compatible jobs painted together (default: 1 on CPU, 4 on CUDA)",
    )  # fmt: skip
    parser.add_argument("--job-timeout", type=float, default=settings.job_timeout_s)
    parser.add_argument(
        "--poll", type=float, default=settings.worker_poll_s,
        help="seconds between looks at the queue when idle",
    )  # fmt: skip
    parser.add_argument(
        "--stub-painter", action="store_true",
        help="fake painter for tests and benchmarks (or ORSAY_PAINTER=stub|module:factory)",
    )  # fmt: skip
    parser.add_argument("--stub-steps", type=int, default=4)
    parser.add_argument("--stub-step-s", type=float, default=0.0)
    parser.set_defaults(run=run)


def _fail(message: str) -> None:
    print(f"orsay worker: {message}", file=sys.stderr)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not is_redis_url(args.queue):
        _fail("needs a Redis queue: --queue redis://host:6379/0 or ORSAY_QUEUE.")
        _fail("(the embedded queue paints inside `orsay bot`; it needs no worker)")
        return 2
    if args.batch is not None and args.batch < 1:
        _fail(f"--batch must be at least 1, not {args.batch}.")
        return 2
    from engine.observability.logs import configure_logging

    configure_logging(settings.log_level, settings.secrets)
    from engine.queue.redis_backend.worker import WorkerConfig
    from engine.queue.seam import Painter

    painter: Painter
    if args.stub_painter:
        from engine.queue.stub_painter import StubPainter

        painter = StubPainter(steps=args.stub_steps, step_s=args.stub_step_s)
    else:
        from engine.queue.painter_choice import make_painter

        # ORSAY_PAINTER (stub, module:factory) as in `orsay bot`; else the engine, with the flags
        # (which default to the settings) deciding model, weights, device, size and batch
        engine = {"model": args.model, "weights": args.weights, "device": args.device}
        sizes = {"max_size": args.max_size, "batch": args.batch}
        try:
            painter = make_painter(settings.model_copy(update={**engine, **sizes}))
        except (OrsayError, ValueError) as error:  # the device, the weights, ORSAY_PAINTER
            _fail(f"cannot start the painter: {error}")
            return 1
    config = WorkerConfig(
        url=args.queue,
        limits=settings.queue_limits,
        lease_s=args.lease,
        job_timeout_s=args.job_timeout,
        grace_s=settings.shutdown_grace_s,
        poll_s=args.poll,
    )
    asyncio.run(serve(config, painter, metrics_port=settings.metrics_port))
    return 0


async def serve(config: Any, painter: Any, *, metrics_port: int | None = None) -> None:
    """Run the worker until SIGTERM/SIGINT: it stops taking jobs, lets the running ones finish
    within the grace period or hands them back; while Redis is away it waits and retries. With
    `metrics_port`, serve /healthz and /metrics there meanwhile."""
    from engine.queue.redis_backend.worker import RedisWorker

    health = await _start_health(config.url, metrics_port)
    worker = RedisWorker(config, painter)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    finally:
        if health is not None:
            await health.cleanup()


async def _start_health(url: str, port: int | None) -> Any:
    from engine.observability.health import queue_check, start_health_server
    from engine.queue.redis_backend import RedisQueue

    if port is None:
        return None
    queue = RedisQueue(url)
    await queue.start()
    check = queue_check(queue, expect_workers=False, report_device=True)
    return await start_health_server(port, check)
