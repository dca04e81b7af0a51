"""Painters for the chaos tests, loaded by `orsay worker` through ORSAY_PAINTER=module:factory.

`failing()` fails on purpose by style: a weights problem (a typed engine error, not retried) for
Munch, a painter bug (a plain exception) for Klimt; any other style paints like the stub.
"""

from __future__ import annotations

import threading

from engine.errors import WeightsError
from engine.queue.seam import JobRequest, ProgressCallback
from engine.queue.stub_painter import StubPainter


class FailingPainter(StubPainter):
    def __call__(
        self, request: JobRequest, progress: ProgressCallback, cancel: threading.Event
    ) -> bytes:
        slugs = {style.slug for style in request.styles}
        if "munch-the-scream" in slugs:
            raise WeightsError("the VGG weights file is damaged")
        if "klimt-the-kiss" in slugs:
            raise RuntimeError("stub painter bug")
        return super().__call__(request, progress, cancel)


def failing() -> FailingPainter:
    return FailingPainter(steps=3, step_s=0.05)
