"""A batching stub painter for the queue's batch tests: the `StubPainter`'s contract (progress,
previews, markers, result colours) as a `BatchPainter`, recording which jobs it got together.

Jobs share a bucket when they ask for the same output size; content containing `hold_marker`
waits for `release` before painting, so a test can fill the line behind a running job and know
what the worker will find there. Each job of a batch has its own progress events and its own
cancel flag: a cancelled job ends with `Cancelled` and its batch-mates go on. Importable by
`ORSAY_PAINTER=tests.doubles.batch_painters:pairs` in a subprocess worker.
"""

from __future__ import annotations

import threading
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from PIL import Image

from engine.errors import Cancelled
from engine.queue.seam import BatchItem, JobRequest, ProgressCallback
from engine.queue.stub_painter import StubPainter, result_colour, solid_jpeg

HOLD_TIMEOUT_S = 30.0


@dataclass
class BatchingPainter(StubPainter):
    batch: int = 2
    hold_marker: bytes = b"HOLD"
    batches: list[list[bytes]] = field(default_factory=list)  # contents painted together
    release: threading.Event = field(default_factory=threading.Event)

    def bucket(self, request: JobRequest) -> Hashable:
        return request.options.size

    def __call__(
        self, request: JobRequest, progress: ProgressCallback, cancel: threading.Event
    ) -> bytes:
        self.batches.append([request.content])
        self._hold([request])
        return super().__call__(request, progress, cancel)

    def paint_batch(self, items: Sequence[BatchItem]) -> list[bytes | BaseException]:
        """Every job steps in lockstep, as in one forward/backward; each ends on its own."""
        assert 1 < len(items) <= self.batch, f"{len(items)} jobs for a batch of {self.batch}"
        assert len({self.bucket(item.request) for item in items}) == 1, "mixed buckets"
        self.batches.append([item.request.content for item in items])
        self._hold([item.request for item in items])
        results: list[bytes | BaseException | None] = [None] * len(items)
        for i, item in enumerate(items):
            results[i] = self._refusal(item.request.content)
        total = self.steps * self.scales
        for scale in range(1, self.scales + 1):
            for step in range(1, self.steps + 1):
                live = [i for i, result in enumerate(results) if result is None]
                if not live:
                    break
                if self.step_s:
                    threading.Event().wait(self.step_s)
                for i in live:
                    item = items[i]
                    if item.cancel.is_set():
                        results[i] = Cancelled("cancelled")
                        continue
                    colour = result_colour(item.request)
                    preview = Image.new("RGB", (8, 8), colour) if step == self.steps else None
                    done = (scale - 1) * self.steps + step
                    self._report(item.progress, scale, step, done / total, preview, None)
        for i, item in enumerate(items):
            if results[i] is None:
                cancelled = item.cancel.is_set()
                results[i] = Cancelled("cancelled") if cancelled else self._picture(item.request)
        return [result for result in results if result is not None]

    def _hold(self, requests: list[JobRequest]) -> None:
        if any(self.hold_marker in request.content for request in requests):
            assert self.release.wait(HOLD_TIMEOUT_S), "the test never released the painter"

    def _picture(self, request: JobRequest) -> bytes:
        return solid_jpeg(result_colour(request), self.size)


def pairs() -> BatchingPainter:
    """For crash tests in a subprocess: batches of two, slow enough to be killed mid-batch."""
    return BatchingPainter(batch=2, steps=10, scales=2, step_s=0.1)
