"""Which painter a process runs, from the settings: shared by `orsay bot` (embedded queue) and
`orsay worker`, so ORSAY_PAINTER and ORSAY_BATCH mean the same in both. This is the one place
that builds the engine painter from settings."""

from __future__ import annotations

import importlib

from engine.queue.seam import Painter
from engine.settings import Settings


def make_painter(settings: Settings) -> Painter:
    """The engine on this process's device, taking up to ORSAY_BATCH compatible jobs at once
    (default: engine.settings.default_batch for the device), or a dev/test painter by name
    (`ORSAY_PAINTER=stub` or `module:factory`, the factory called with no arguments; a plain
    Painter paints one job at a time, a BatchPainter brings its own `batch`)."""
    spec = settings.painter
    if spec == "stub":
        from engine.queue.stub_painter import StubPainter

        return StubPainter()
    if spec:
        module, _, name = spec.partition(":")
        factory = getattr(importlib.import_module(module), name or "make_painter")
        painter: Painter = factory()
        return painter
    from engine.queue.engine_painter import make_engine_painter

    return make_engine_painter(
        settings.model,
        settings.weights,
        settings.device,
        settings.max_size,
        gallery=settings.gallery,
        style_cache_dir=settings.style_cache_dir,
        batch=settings.batch,
        print_size=settings.print_size,
    )
