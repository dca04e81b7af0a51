"""Which painter a process runs, from the settings: shared by `orsay bot` (embedded queue) and
`orsay worker`, so ORSAY_PAINTER means the same in both."""

from __future__ import annotations

import importlib

from engine.queue.seam import Painter
from engine.settings import Settings


def make_painter(settings: Settings) -> Painter:
    """The engine on this process's device, or a dev/test painter by name
    (`ORSAY_PAINTER=stub` or `module:factory`, the factory called with no arguments)."""
    spec = settings.painter
    if spec == "stub":
        from engine.queue.stub_painter import StubPainter

        return StubPainter()
    if spec:
        module, _, name = spec.partition(":")
        factory = getattr(importlib.import_module(module), name or "make_painter")
        painter: Painter = factory()
        return painter
    from engine.queue.painter import make_engine_painter

    return make_engine_painter(
        settings.model,
        settings.weights,
        settings.device,
        settings.max_size,
        gallery=settings.gallery,
        style_cache_dir=settings.style_cache_dir,
    )
