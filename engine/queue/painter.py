"""The real painter behind the queue: a `JobRequest` in, an encoded picture out, via the engine.

Workers call `make_engine_painter()` once at start, which loads the network then (so the first
user does not pay for it, and bad weights stop the worker before it takes a job); each job then
maps the bot's few options onto `StylizeOptions`. `job_event` is the one place the engine's
ProgressEvent becomes the queue's JobEvent (the painter's messages, e.g. the OOM fallback,
included). Torch is imported here only, never by the bot side of the queue.
"""

from __future__ import annotations

import io
import re
import threading
from pathlib import Path

from PIL import Image

from engine.options import ProgressEvent, StyleInput, StylizeOptions
from engine.presets import DEFAULT_QUALITY, QUALITIES, strength_value
from engine.queue import blobs
from engine.queue.seam import JobEvent, JobRequest, Painter, ProgressCallback, StyleChoice

PREVIEW_SIDE = 256  # previews are for a chat bubble, not for keeping
SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,80}")


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _preview(image: Image.Image) -> bytes:
    small = image.copy()
    small.thumbnail((PREVIEW_SIDE, PREVIEW_SIDE))
    return _jpeg(small, quality=80)


def notice_of(message: str | None) -> str | None:
    """A stable code for a painter message the bot can say in the user's language."""
    if message and "out of memory" in message.lower():
        return "oom_retry"
    return None


def job_event(event: ProgressEvent) -> JobEvent | None:
    """The queue's `progress` event for an engine event; None for stages a chat need not hear
    about (loading, style targets) unless they bring a preview or a message."""
    if event.stage != "optimizing" and event.preview is None and event.message is None:
        return None
    return JobEvent(
        "",  # the worker stamps the job id
        "progress",
        scale=event.scale_index,
        scales=event.scale_count,
        step=event.step,
        total=event.total_steps,
        fraction=event.fraction,
        eta_s=event.eta_s,
        size=event.size,
        preview=_preview(event.preview) if event.preview is not None else None,
        message=event.message,
        notice=notice_of(event.message),
    )


def job_options(
    request: JobRequest, *, model: str, weights: str, device: str, max_size: int
) -> StylizeOptions:
    """The engine options for a job; `max_size` is the operator's cap, whatever the bot sent."""
    opts = request.options
    quality = opts.quality if opts.quality in QUALITIES else DEFAULT_QUALITY
    return StylizeOptions(
        size=max(32, min(int(opts.size), max_size)),
        strength=strength_value(opts.strength),
        preserve_colors="luminance" if opts.preserve_colors else "off",
        quality=quality,  # type: ignore[arg-type]
        model=model,  # type: ignore[arg-type]
        weights=weights,
        device=device,
    )


def style_input(choice: StyleChoice, gallery: Path) -> StyleInput:
    """A gallery painting that travelled with the job (its style targets cached under its
    sha256, so any worker shares them whatever its gallery holds), an uploaded picture (never
    cached on disk: /forget must remove the user's data), or a bare slug from a job queued before
    paintings travelled with their jobs, looked up in this worker's own gallery."""
    from engine.imaging import load_image

    if choice.image is not None:
        key = None
        if choice.slug is not None:  # a gallery painting, not the user's own picture
            key = blobs.cache_key(choice.sha256 or blobs.digest(choice.image))
        return StyleInput(load_image(choice.image), weight=choice.weight, cache_key=key)
    if not choice.slug or not SLUG.fullmatch(choice.slug):
        # load_style() also opens file paths; a slug from a chat must never name a file
        from engine.errors import StyleNotFound

        raise StyleNotFound("That painting is not in the gallery.")
    from engine.gallery import load_style

    style: StyleInput = load_style(choice.slug, folder=gallery)
    return StyleInput(style.image, weight=choice.weight, cache_key=style.cache_key)


def make_engine_painter(
    model: str = "vgg19",
    weights: str = "torchvision",
    device: str = "auto",
    max_size: int = 512,
    *,
    gallery: Path,
    style_cache_dir: Path | None = None,
) -> Painter:
    """A `Painter` running `engine.painter.stylize` on this process's device, network loaded now;
    gallery slugs are looked up in `gallery`, their style targets cached in `style_cache_dir`."""
    from engine.device import pick_device
    from engine.imaging import load_image
    from engine.model import load_features
    from engine.painter import stylize

    resolved = str(pick_device(device))
    load_features(model, weights, resolved)  # once per process; stylize() reuses it

    def paint(request: JobRequest, progress: ProgressCallback, cancel: threading.Event) -> bytes:
        content = load_image(request.content)
        styles = [style_input(choice, gallery) for choice in request.styles]
        options = job_options(
            request, model=model, weights=weights, device=resolved, max_size=max_size
        )
        options.style_cache_dir = style_cache_dir

        def on_event(event: ProgressEvent) -> None:
            if (converted := job_event(event)) is not None:
                progress(converted)

        result = stylize(content, styles, options, progress=on_event, cancel=cancel)
        return _jpeg(result.image, quality=92)

    return paint
