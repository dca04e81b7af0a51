"""A process running the embedded queue, for the crash tests to SIGKILL.

    python embedded_child.py [--batch N] DATA_DIR STEP_S [CONTENT ...]

Opens the queue in DATA_DIR with a stub painter (STEP_S seconds per step; with --batch N, the
batching stub of tests.doubles.batch_painters, N jobs at once), submits one job per CONTENT
(user i+1), prints `submitted <id>` for each, then `started <id>` whenever a job starts, and
runs until killed. A CONTENT containing CRASH makes the painter SIGKILL this process.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from engine.queue import JobRequest, StyleChoice, open_queue
from engine.queue.stub_painter import StubPainter
from tests.doubles.batch_painters import BatchingPainter


async def main(data_dir: Path, step_s: float, contents: list[str], batch: int = 1) -> None:
    ids = []
    if contents:  # submit first, then paint: a crashing job must not kill us before we report
        queue = open_queue(None, data_dir=data_dir)
        await queue.start()
        for i, content in enumerate(contents):
            request = JobRequest(i + 1, i + 1, content.encode(), [StyleChoice(slug="starry")])
            job_id, _ = await queue.submit(request)
            ids.append(job_id)
            print("submitted", job_id, flush=True)
        await queue.close()
    painter = StubPainter(steps=10, step_s=step_s)
    if batch > 1:
        painter = BatchingPainter(batch=batch, steps=10, step_s=step_s)
    queue = open_queue(None, painter=painter, data_dir=data_dir)
    await queue.start()
    for job in await queue.undelivered():
        if job.id not in ids:
            ids.append(job.id)

    async def watch(job_id: str) -> None:
        async for event in queue.events(job_id):
            if event.kind == "started":
                print("started", job_id, flush=True)

    await asyncio.gather(*(watch(job_id) for job_id in ids))
    await asyncio.sleep(3600)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("step_s", type=float)
    parser.add_argument("contents", nargs="*")
    args = parser.parse_args()
    asyncio.run(main(args.data_dir, args.step_s, args.contents, args.batch))
