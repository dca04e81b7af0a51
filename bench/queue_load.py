"""Load test of the job queue: many users, a stub painter, the bot's side measured.

    .venv/bin/python bench/queue_load.py [--backend sqlite|redis|both] [--users 200] [--jobs 1000]

Each simulated user keeps at most `per_user` (2, the default limit) jobs active: it submits two,
follows their events like the bot does, acknowledges each result, and submits its next job when
one finishes, until all its jobs are in. The global queue limit is raised to the job count so the
load is not refused (the default of 100 would turn most of the first burst into QueueFull).
Painting is the stub painter: in a thread of this process (embedded, like `orsay bot`), or in
`orsay worker --stub-painter` processes (Redis).

Reported: submit throughput (the opening burst of users x per_user concurrent submits, and over
the whole run), event delivery latency (`started` and `done`: receipt time minus the time the
backend recorded), event-loop lag (a 10 ms ticker's oversleep), and jobs lost (accepted but never
reported done or failed; must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.queue import (  # noqa: E402
    JobQueue,
    JobRequest,
    QueueLimits,
    QueueUnavailable,
    StyleChoice,
    TooManyActiveJobs,
    open_queue,
)
from engine.queue.stub_painter import StubPainter  # noqa: E402
from engine.settings import child_env  # noqa: E402


@dataclass
class Tally:
    submit_s: list[float] = field(default_factory=list)  # wall time of each submit call
    received: dict[str, dict[str, float]] = field(default_factory=dict)  # job -> kind -> time
    terminal: dict[str, list[str]] = field(default_factory=dict)
    accepted: list[str] = field(default_factory=list)
    refused: int = 0
    unavailable: int = 0


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def ticker(lags: list[float], stop: asyncio.Event, period: float = 0.01) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        before = loop.time()
        await asyncio.sleep(period)
        lags.append(max(0.0, loop.time() - before - period))


async def follow(queue: JobQueue, job_id: str, tally: Tally) -> None:
    seen = tally.received.setdefault(job_id, {})
    async for event in queue.events(job_id):
        seen.setdefault(event.kind, time.time())
        if event.terminal:
            tally.terminal.setdefault(job_id, []).append(event.kind)
    await queue.acknowledge(job_id)


async def submit(queue: JobQueue, user: int, n: int, tally: Tally) -> str:
    request = JobRequest(user, user, b"photo %d/%d" % (user, n), [StyleChoice(slug="starry")])
    while True:
        started = time.perf_counter()
        try:
            job_id, _ = await queue.submit(request)
        except TooManyActiveJobs:  # the closed loop below never hits it; counted if it does
            tally.refused += 1
            await asyncio.sleep(0.05)
            continue
        except QueueUnavailable:  # what a user would be told; counted, then tried again
            tally.unavailable += 1
            await asyncio.sleep(0.5)
            continue
        tally.submit_s.append(time.perf_counter() - started)
        tally.accepted.append(job_id)
        return job_id


async def user_loop(
    queue: JobQueue, user: int, jobs: int, per_user: int, tally: Tally, burst: asyncio.Barrier
) -> None:
    first = min(per_user, jobs)
    active = set()
    for n in range(first):
        job_id = await submit(queue, user, n, tally)
        active.add(asyncio.create_task(follow(queue, job_id, tally)))
    await burst.wait()
    submitted = first
    while active:
        done, active = await asyncio.wait(active, return_when=asyncio.FIRST_COMPLETED)
        for _ in done:
            if submitted < jobs:
                job_id = await submit(queue, user, submitted, tally)
                active.add(asyncio.create_task(follow(queue, job_id, tally)))
                submitted += 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_backend(backend: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    limits = QueueLimits(per_user=2, max_queue=args.jobs)
    painter = StubPainter(steps=args.steps, scales=2, step_s=args.step_s)
    procs: list[subprocess.Popen[bytes]] = []
    if backend == "sqlite":
        queue = open_queue(None, painter=painter, data_dir=workdir / "sqlite", limits=limits)
    else:
        port = free_port()
        procs.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL,
        ))  # fmt: skip
        url = f"redis://127.0.0.1:{port}/0"
        time.sleep(0.5)
        env = child_env(PYTHONPATH=str(ROOT), ORSAY_LOG_LEVEL="WARNING")
        for _ in range(args.workers):
            cmd = [sys.executable, "-m", "orsay", "worker", "--queue", url, "--stub-painter"]
            extra = ["--stub-steps", str(args.steps), "--stub-step-s", str(args.step_s)]
            procs.append(subprocess.Popen([*cmd, *extra, "--poll", "0.02"], env=env))
        queue = open_queue(url, limits=limits)
    await queue.start()
    tally = Tally()
    lags: list[float] = []
    stop = asyncio.Event()
    tick = asyncio.create_task(ticker(lags, stop))
    per_user_jobs = [
        args.jobs // args.users + (u < args.jobs % args.users) for u in range(args.users)
    ]
    burst_size = sum(min(2, n) for n in per_user_jobs)
    barrier = asyncio.Barrier(args.users + 1)
    started = time.perf_counter()
    users = [
        asyncio.create_task(user_loop(queue, u + 1, n, 2, tally, barrier))
        for u, n in enumerate(per_user_jobs)
    ]
    await asyncio.wait_for(barrier.wait(), args.timeout)
    burst_s = time.perf_counter() - started
    await asyncio.wait_for(asyncio.gather(*users), args.timeout)
    total_s = time.perf_counter() - started
    stop.set()
    await tick
    records = {job_id: await queue.get(job_id) for job_id in tally.accepted}
    await queue.close()
    for proc in reversed(procs):
        proc.terminate()
        proc.wait(30)

    started_lat, done_lat = [], []
    for job_id, job in records.items():
        seen = tally.received.get(job_id, {})
        if job and job.started_at and "started" in seen:
            started_lat.append(seen["started"] - job.started_at)
        if job and job.finished_at and "done" in seen:
            done_lat.append(seen["done"] - job.finished_at)
    outcomes = [kinds for kinds in tally.terminal.values()]
    lost = [j for j in tally.accepted if tally.terminal.get(j) not in (["done"], ["failed"])]
    return {
        "backend": backend,
        "users": args.users,
        "jobs_accepted": len(tally.accepted),
        "jobs_done": sum(k == ["done"] for k in outcomes),
        "jobs_lost": len(lost),
        "delivered_twice": sum(len(k) > 1 for k in outcomes),
        "refused": tally.refused,
        "unavailable": tally.unavailable,
        "burst_submits": burst_size,
        "burst_submits_per_s": round(burst_size / burst_s, 1),
        "overall_submits_per_s": round(len(tally.accepted) / total_s, 1),
        "submit_call_p50_ms": round(pct(tally.submit_s, 50) * 1000, 2),
        "submit_call_p99_ms": round(pct(tally.submit_s, 99) * 1000, 2),
        "started_latency_p50_ms": round(pct(started_lat, 50) * 1000, 2),
        "started_latency_p99_ms": round(pct(started_lat, 99) * 1000, 2),
        "done_latency_p50_ms": round(pct(done_lat, 50) * 1000, 2),
        "done_latency_p99_ms": round(pct(done_lat, 99) * 1000, 2),
        "loop_lag_p50_ms": round(pct(lags, 50) * 1000, 2),
        "loop_lag_p99_ms": round(pct(lags, 99) * 1000, 2),
        "loop_lag_max_ms": round(max(lags) * 1000, 2) if lags else None,
        "wall_s": round(total_s, 2),
        "jobs_per_s": round(len(tally.accepted) / total_s, 1),
        "painter": f"stub {args.steps}x2 steps, {args.step_s}s/step",
        "redis_workers": args.workers if backend == "redis" else None,
        "mean_lag_ms": round(statistics.fmean(lags) * 1000, 3) if lags else None,
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "redis", "both"], default="both")
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=4, help="stub steps per scale (2 scales)")
    parser.add_argument("--step-s", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=4, help="orsay worker processes (redis)")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    backends = ["sqlite", "redis"] if args.backend == "both" else [args.backend]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            result = await run_backend(backend, args, Path(tmp))
            results.append(result)
            print(json.dumps(result, indent=2), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if any(r["jobs_lost"] or r["delivered_twice"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
