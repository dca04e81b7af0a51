"""The real painter behind the queue: a `JobRequest` in, an encoded picture out, via the engine.

Workers call `make_engine_painter()` once at start, which warms the engine up then (so the first
user does not pay for it, and bad weights stop the worker before it takes a job). The painter is
a `BatchPainter`: each job maps the bot's few options onto `StylizeOptions`, and compatible jobs
are painted together in one `stylize_batch` call. `job_event` is the one place the engine's
ProgressEvent becomes the queue's JobEvent (the painter's messages, e.g. the OOM fallback,
included). Torch is imported here only, never by the bot side of the queue.
"""

from __future__ import annotations

import io
import re
import threading
from collections.abc import Hashable, Sequence
from pathlib import Path

from PIL import Image

from engine.options import BatchJob, ProgressEvent, StyleInput, StylizeOptions
from engine.presets import PRINT, check_quality, strength_value
from engine.queue import blobs
from engine.queue.seam import BatchItem, JobEvent, JobRequest, ProgressCallback, StyleChoice
from engine.settings import default_batch

PREVIEW_SIDE = 256  # previews are for a chat bubble, not for keeping
SLUG = re.compile(r"[a-z0-9][a-z0-9_-]{0,80}")
EXIF_ORIENTATION = 0x0112


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
    request: JobRequest,
    *,
    model: str,
    weights: str,
    device: str,
    max_size: int,
    print_size: int = 0,
) -> StylizeOptions:
    """The engine options for a job; `max_size` is the operator's cap, whatever the bot sent,
    and `print_size` (ORSAY_PRINT_SIZE; 0: prints off on this worker, which then paints a print
    at `max_size`) a print's. An unknown quality or strength name raises UnknownPreset: the job
    fails as a painter error, logged with the name, rather than painting something else than
    was asked."""
    opts = request.options
    printing = opts.quality == PRINT
    quality = opts.quality if printing else check_quality(opts.quality)
    cap = print_size if printing and print_size > 0 else max_size
    return StylizeOptions(
        size=max(32, min(int(opts.size), cap)),
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


def content_size(data: bytes) -> tuple[int, int]:
    """The photo's upright (width, height) from its header alone, as `load_image` will turn it
    (EXIF orientations 5-8 swap the sides); a batch's bucket needs no decoding."""
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
        try:
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
        except Exception:  # a broken EXIF block: guess upright; paint_batch regroups if not
            orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


class EnginePainter:
    """A `BatchPainter` running `engine.style_transfer.stylize_batch` on this process's device:
    up to `batch` jobs of one bucket (engine.batching.bucket_key) in one forward/backward, each
    with its own events and cancel flag; called with one job, it paints that job alone."""

    def __init__(
        self,
        model: str,
        weights: str,
        device: str,
        max_size: int,
        *,
        gallery: Path,
        style_cache_dir: Path | None,
        batch: int,
        print_size: int = 0,
    ) -> None:
        self.model, self.weights, self.device, self.max_size = model, weights, device, max_size
        self.gallery, self.style_cache_dir, self.batch = gallery, style_cache_dir, batch
        self.print_size = print_size

    def options(self, request: JobRequest) -> StylizeOptions:
        options = job_options(
            request,
            model=self.model,
            weights=self.weights,
            device=self.device,
            max_size=self.max_size,
            print_size=self.print_size,
        )
        options.style_cache_dir = self.style_cache_dir
        return options

    def bucket(self, request: JobRequest) -> Hashable | None:
        """The job's batch bucket; None (painted alone) for a big print."""
        from engine.batching import alone, bucket_key

        options = self.options(request)
        if alone(options):
            return None
        return bucket_key(content_size(request.content), options)

    def __call__(
        self, request: JobRequest, progress: ProgressCallback, cancel: threading.Event
    ) -> bytes:
        (result,) = self.paint_batch([BatchItem(request, progress, cancel)])
        if isinstance(result, BaseException):
            raise result
        return result

    def paint_batch(self, items: Sequence[BatchItem]) -> list[bytes | BaseException]:
        """One result per item. A job whose photo or painting cannot be read fails alone; the
        others are grouped again by the bucket of their decoded photo (the header's size can
        differ from it by a rounding) and each group is painted in one `stylize_batch` call."""
        from engine.batching import bucket_key, group
        from engine.style_transfer import stylize_batch

        results: list[bytes | BaseException | None] = [None] * len(items)
        jobs: list[BatchJob] = []
        rows: list[int] = []
        for i, item in enumerate(items):
            try:
                jobs.append(self._job(item))
                rows.append(i)
            except Exception as error:
                results[i] = error
        keys = [bucket_key(job.content.size, job.options) for job in jobs]
        for members in group(keys, max(1, len(keys))):
            painted = stylize_batch([jobs[m] for m in members])
            for m, result in zip(members, painted, strict=True):
                results[rows[m]] = (
                    result if isinstance(result, BaseException) else _jpeg(result.image, 92)
                )
        return [r for r in results if r is not None]

    def _job(self, item: BatchItem) -> BatchJob:
        from engine.imaging import load_image

        request, progress = item.request, item.progress

        def on_event(event: ProgressEvent) -> None:
            if (converted := job_event(event)) is not None:
                progress(converted)

        content = load_image(request.content)
        styles = [style_input(choice, self.gallery) for choice in request.styles]
        return BatchJob(content, styles, self.options(request), on_event, item.cancel)


def make_engine_painter(
    model: str = "vgg19",
    weights: str = "torchvision",
    device: str = "auto",
    max_size: int = 512,
    *,
    gallery: Path,
    style_cache_dir: Path | None = None,
    batch: int | None = None,
    print_size: int = 0,
) -> EnginePainter:
    """The engine painter on this process's device, warmed up now (network loaded, kernels set up,
    engine.style_transfer.warm_up), so the first user does not pay for it and bad weights stop the
    worker before it takes a job. Gallery slugs are looked up in `gallery`, their style targets
    cached in `style_cache_dir`; `batch` (ORSAY_BATCH) defaults to engine.settings.default_batch for
    the device."""
    from engine.device import pick_device
    from engine.style_transfer import warm_up

    resolved = str(pick_device(device))
    warm_up(model, weights, resolved)
    return EnginePainter(
        model,
        weights,
        resolved,
        max_size,
        gallery=gallery,
        style_cache_dir=style_cache_dir,
        batch=batch if batch is not None else default_batch(resolved),
        print_size=print_size,
    )
