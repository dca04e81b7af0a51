"""Painters for the slow-link chaos scenarios, loaded by `orsay worker` through
ORSAY_PAINTER=tests.chaos.painters:<factory>.

`big()` paints like the stub but returns a result of RESULT_BYTES, so its upload takes seconds
on the slow link (tests/doubles/link.py: 256 KB/s up) the way a real painting's does; the stub's
own result is a 16 px JPEG that any link sends at once. The padding follows the JPEG's end
marker, where decoders (and the fake Bot API) ignore it.
"""

from __future__ import annotations

import threading

from engine.queue.seam import JobRequest, ProgressCallback
from engine.queue.stub_painter import StubPainter

# ~3 s at 256 KB/s: inside PTB's 5 s read timeout, which the fake's upload time counts against
RESULT_BYTES = 768_000


class BigResultPainter(StubPainter):
    def __call__(
        self, request: JobRequest, progress: ProgressCallback, cancel: threading.Event
    ) -> bytes:
        result = super().__call__(request, progress, cancel)
        return result + bytes(max(0, RESULT_BYTES - len(result)))


def big() -> BigResultPainter:
    return BigResultPainter(steps=3, step_s=0.1)  # 2 scales: 0.6 s a job
