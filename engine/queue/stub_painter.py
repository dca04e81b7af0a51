"""A fast, deterministic painter for queue tests and benches: no torch, the real one's contract.

It walks `scales` x `steps` fake optimizer steps, reports progress after each, sends a tiny JPEG
preview at the end of every scale, honours cancellation between steps, and returns a small JPEG
whose colour is derived from the request, so tests can check which job produced which result.
Content containing `fail_marker` raises a typed engine error (a user error, not retried);
`error_marker` raises a plain exception (a painter bug); `crash_marker` SIGKILLs the whole process,
which is how the crash tests simulate a worker dying mid-job. Content containing `oom_marker`
makes it report what the engine reports when it falls back to a smaller size after running out
of memory, through the same converter (engine.queue.engine_painter.job_event) as the real painter.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import threading
import time
from dataclasses import dataclass

from PIL import Image

from engine.errors import Cancelled, CorruptImage
from engine.options import ProgressEvent
from engine.queue.engine_painter import job_event
from engine.queue.seam import JobRequest, ProgressCallback

# the engine's words (engine/style_transfer.py)
OOM_MESSAGE = "CPU out of memory: retrying at {size} px"


def solid_jpeg(rgb: tuple[int, int, int], size: int) -> bytes:
    """The stub's result: one colour, so a test can tell which request it painted."""
    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def result_colour(request: JobRequest) -> tuple[int, int, int]:
    """The colour the stub paints for `request` (tests compare results against it)."""
    h = hashlib.sha256(request.content)
    for style in request.styles:
        h.update((style.slug or "").encode())
        if style.slug is None:  # an upload; a gallery painting is its slug, bytes sent or not
            h.update(style.image or b"")
    d = h.digest()
    return d[0], d[1], d[2]


@dataclass
class StubPainter:
    steps: int = 4
    scales: int = 2
    step_s: float = 0.0
    fail_marker: bytes | None = b"FAIL"
    error_marker: bytes | None = b"ERROR"
    crash_marker: bytes | None = b"CRASH"
    oom_marker: bytes | None = b"OOM"
    size: int = 16

    def __call__(
        self, request: JobRequest, progress: ProgressCallback, cancel: threading.Event
    ) -> bytes:
        content = request.content
        refused = self._refusal(content)
        if refused is not None:
            raise refused
        colour = result_colour(request)
        total = self.steps * self.scales
        oom = bool(self.oom_marker and self.oom_marker in content)
        for scale in range(1, self.scales + 1):
            if oom and scale == self.scales:
                message = OOM_MESSAGE.format(size=self.size)
                self._report(progress, scale, 0, (scale - 1) / self.scales, None, message)
            for step in range(1, self.steps + 1):
                if cancel.is_set():
                    raise Cancelled("cancelled")
                if self.step_s:
                    time.sleep(self.step_s)
                done = (scale - 1) * self.steps + step
                preview = Image.new("RGB", (8, 8), colour) if step == self.steps else None
                self._report(progress, scale, step, done / total, preview, None)
        if cancel.is_set():
            raise Cancelled("cancelled")
        return solid_jpeg(colour, self.size)

    def _refusal(self, content: bytes) -> BaseException | None:
        """What the markers make of this job: None to paint it (the crash marker kills)."""
        if self.crash_marker and self.crash_marker in content:
            os.kill(os.getpid(), signal.SIGKILL)
        if self.fail_marker and self.fail_marker in content:
            return CorruptImage("The photo could not be read.")
        if self.error_marker and self.error_marker in content:
            return RuntimeError("stub painter bug")
        return None

    def _report(
        self,
        progress: ProgressCallback,
        scale: int,
        step: int,
        fraction: float,
        preview: Image.Image | None,
        message: str | None,
    ) -> None:
        """Speak the engine's language (a ProgressEvent) and convert it like the real painter."""
        left = (1 - fraction) * self.steps * self.scales * self.step_s
        event = ProgressEvent(
            stage="optimizing",
            scale_index=scale,
            scale_count=self.scales,
            size=self.size,
            step=step,
            total_steps=self.steps,
            fraction=fraction,
            loss=None,
            elapsed_s=0.0,
            eta_s=left,
            preview=preview,
            message=message,
        )
        converted = job_event(event)
        if converted is not None:
            progress(converted)
