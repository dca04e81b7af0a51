"""The decode itself, meant to run inside the sandbox's child process (sandbox.py).

Order matters for memory: the picture is decoded once (JPEGs at the smallest libjpeg scale at
least as large as needed), shrunk to the normalised size in its own mode, and only then turned,
colour-converted and composited, so the later copies are of the small picture. Peak memory is
the decoded picture plus its normalised copy.
"""

from __future__ import annotations

import io
import warnings

from PIL import AvifImagePlugin, Image, ImageFile, UnidentifiedImageError

from engine.errors import CorruptImage, ImageError, ImageTooCostly, ImageTooSmall, NotAnImage
from engine.imaging import probe
from engine.imaging.budget import Budget
from engine.imaging.convert import orientation, to_rgb, to_srgb, upright
from engine.imaging.sniff import NOT_AN_IMAGE, Sniffed, looks_like_text, sniff

_DECODER_THREADS = 2
_CORRUPT = "That picture is damaged or incomplete (maybe the upload was cut short)."
DRAFT_SLACK = 0.7  # a drafted JPEG may land between 70 % and 100 % of the normalised size
_FULL_SIZE_OK = ("RGB", "RGBA", "L", "LA", "CMYK", "I", "F", "RGBX", "YCbCr", "I;16", "I;16B")


def prepare_process() -> None:
    """Settings for a decoding process only: our own pixel checks replace Pillow's bomb check
    (which would refuse a 108 MP JPEG that decodes at 1/4 scale), and decoders get few
    threads, so the CPU limit measures one decode, not a machine's worth."""
    Image.MAX_IMAGE_PIXELS = None
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    AvifImagePlugin.DEFAULT_MAX_THREADS = _DECODER_THREADS
    try:
        import pillow_heif

        pillow_heif.register_heif_opener(
            decode_threads=_DECODER_THREADS, thumbnails=False, depth_images=False, aux_images=False
        )
    except ImportError:  # pragma: no cover - a dependency; sniff still names HEIC
        pass


def decode(data: bytes, budget: Budget) -> tuple[Image.Image, bool]:
    """`data` as an upright RGB picture no longer than `budget.max_side` (unless its short side
    would then drop below `min_side`), and whether it is exactly what `data` would show
    unchanged (a JPEG needing no resize, turn or colour conversion, which can be passed on
    as it is). Raises only ImageError subclasses."""
    found = sniff(data)
    if not found.strong and looks_like_text(data):  # "BM is a brand", "P6 is a camera"
        raise NotAnImage(NOT_AN_IMAGE)
    try:
        return _decode(data, found, budget)
    except ImageError:
        raise
    except MemoryError as error:
        raise ImageTooCostly("decoding needs more memory than allowed") from error
    except UnidentifiedImageError as error:
        raise _unreadable(data, found) from error
    except Exception as error:  # every decoder has its own idea of an error type
        raise _unreadable(data, found) from error


def _unreadable(data: bytes, found: Sniffed) -> ImageError:
    if not found.strong and looks_like_text(data):
        return NotAnImage(NOT_AN_IMAGE)
    if not found.strong:
        return NotAnImage(NOT_AN_IMAGE) if len(data) < 64 else CorruptImage(_CORRUPT)
    return CorruptImage(_CORRUPT)


def _decode(data: bytes, found: Sniffed, budget: Budget) -> tuple[Image.Image, bool]:
    fmt = found.format
    if fmt == "PNG":
        probe.check_png(data, budget)
    elif fmt == "ICO":
        probe.check_ico(data, budget)
    elif fmt == "BMP":
        probe.check_bmp(data, budget)
    elif fmt == "JPEG":
        probe.check_jpeg(data, budget)
    formats = ("JPEG", "MPO") if fmt == "JPEG" else (fmt,)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns about odd metadata; the pixels decide
        opened = Image.open(io.BytesIO(data), formats=formats)
    with opened:
        width, height = opened.size
        if fmt != "JPEG":
            probe.check_pixels(width, height, budget)
        if min(width, height) < budget.min_side:
            raise ImageTooSmall(
                f"That picture is too small ({width}×{height}); "
                f"each side needs at least {budget.min_side} pixels.",
                width=width,
                height=height,
                min_side=budget.min_side,
            )
        target = target_size(opened.size, budget)
        opened.seek(0)  # animations: the first frame is the picture
        if fmt == "JPEG" and target != opened.size:
            opened.draft("RGB" if opened.mode == "RGB" else None, _draft_request(target))
        opened.load()
        # after load(): PNG's getexif() loads the picture itself and would swallow its errors
        turn, icc = orientation(opened), opened.info.get("icc_profile")
        image: Image.Image = opened
        if image.mode not in _FULL_SIZE_OK or "transparency" in image.info:
            image = to_rgb(image)
        target = _no_larger(target, image.size)
        if image.size != target:
            # Image.reduce() has no 16-bit mode; resize does, so 16-bit grey stays 2 bytes a pixel
            gap = None if image.mode.startswith("I;16") else 3.0
            image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=gap)
        as_sent = fmt == "JPEG" and image is opened and image.size == (width, height)
        as_sent = as_sent and turn == 1 and not icc
        image = to_rgb(to_srgb(upright(image, turn), icc if isinstance(icc, bytes) else None))
        return image, as_sent and image.mode == "RGB" and opened.mode in ("RGB", "L")


def _draft_request(target: tuple[int, int]) -> tuple[int, int]:
    """libjpeg scales by 1/2, 1/4 or 1/8 only, and Pillow's draft picks the smallest scale at
    least as large as asked. Asking for the exact target would decode an 8000×6000 photo at
    full size (8000/4096 < 2); asking for 70 % of it decodes at 1/2 (4000×3000), a quarter of
    the work and memory, for a picture 98 % as large as the target."""
    return max(1, int(target[0] * DRAFT_SLACK)), max(1, int(target[1] * DRAFT_SLACK))


def _no_larger(target: tuple[int, int], decoded: tuple[int, int]) -> tuple[int, int]:
    """Never enlarge: a JPEG drafted below the target stays at its decoded size."""
    return target if decoded[0] >= target[0] and decoded[1] >= target[1] else decoded


def target_size(size: tuple[int, int], budget: Budget) -> tuple[int, int]:
    """The normalised size: the long side at most `max_side`, the short side kept at least
    `min_side` (a 65535×100 strip stays 10486×16 rather than becoming unpaintable)."""
    width, height = size
    scale = min(1.0, budget.max_side / max(width, height))
    scale = max(scale, min(1.0, budget.min_side / min(width, height)))
    return max(1, round(width * scale)), max(1, round(height * scale))
