"""Painters for bot tests: the queue's stub, with results at the size the job asked for, so a
settings change is visible in the returned photo. Also importable by `ORSAY_PAINTER=module:name`
in a subprocess bot."""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass

from PIL import Image

from engine.queue.seam import JobRequest, ProgressCallback
from engine.queue.stub_painter import StubPainter, result_colour


@dataclass
class SizedPainter(StubPainter):
    def __call__(
        self, request: JobRequest, progress: ProgressCallback, cancel: threading.Event
    ) -> bytes:
        super().__call__(request, progress, cancel)  # progress, previews, markers, cancel
        width, height = Image.open(io.BytesIO(request.content)).size
        long_side = request.options.size
        scale = long_side / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        buf = io.BytesIO()
        Image.new("RGB", size, result_colour(request)).save(buf, format="JPEG", quality=95)
        return buf.getvalue()


def slow() -> SizedPainter:
    """For restart tests in a subprocess: long enough to be killed mid-job."""
    return SizedPainter(steps=10, scales=2, step_s=0.15)
