"""The one door every picture comes through: photos, uploaded styles and gallery files.

Whatever people send (48 MP phone JPEGs, iPhone HEICs, PNGs with alpha, 16-bit scans, photos
lying on their side, truncated uploads, HTML saved as .jpg, files built to waste a decoder's
time), the caller gets a plain upright RGB picture of at most MAX_SIDE pixels a side, or a typed
`ImageError` whose `code` and `params` the bot translates and whose message is safe to show.
Every decode runs in a child process with CPU and memory limits (sandbox.py); in it, header
checks (probe.py) give the honest reason for most refusals before any pixel is decoded.
No torch here: the bot imports this.

Modules: sniff (format from bytes), probe (header checks), decode (the pipeline, in the child),
sandbox (the parent's side: one child per decode, its limits, its reply), child (the child's
side: the limits set, the decode run, one reply sent), convert (orientation, colour, mode),
encode (writing), budget (the limits and why).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from engine.errors import FileTooLarge, NotAnImage
from engine.imaging import sandbox
from engine.imaging.budget import MAX_PIXELS, MAX_SIDE, MIN_SIDE, Budget
from engine.imaging.convert import WHITE, to_rgb
from engine.imaging.encode import (
    OUTPUT_FORMATS,
    atomic_write,
    encode_jpeg,
    encode_png,
    output_format,
    save_image,
)

__all__ = [
    "MAX_PIXELS",
    "MAX_SIDE",
    "MIN_SIDE",
    "OUTPUT_FORMATS",
    "WHITE",
    "Budget",
    "atomic_write",
    "encode_jpeg",
    "encode_png",
    "load_image",
    "normalize",
    "output_format",
    "read_source",
    "save_image",
    "to_rgb",
]


def load_image(
    source: bytes | Path,
    *,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    max_side: int = MAX_SIDE,
) -> Image.Image:
    """Decode `source` into an upright RGB image (first frame of animations), its long side at
    most `max_side`.

    Raises NotAnImage, UnsupportedFormat, CorruptImage, ImageTooLarge (more than `max_pixels`
    in a format decoded at full size, checked from the header before any decoding),
    ImageTooSmall (a side under `min_side`) or ImageTooCostly (over the time or memory
    budget)."""
    budget = Budget(max_side=max_side, max_pixels=max_pixels, min_side=min_side)
    image = sandbox.run(read_source(source), budget, "pixels").image
    assert image is not None
    return image


def normalize(data: bytes, *, budget: Budget | None = None) -> bytes:
    """The picture in `data`, validated and normalised once for the queue: JPEG bytes (quality
    95, full-resolution chroma) of the upright sRGB picture at most MAX_SIDE a side, or `data`
    itself when it already is exactly that (a JPEG Telegram compressed, say), so the painter's
    decode is a small, known-good JPEG. Raises what `load_image` raises."""
    encoded = sandbox.run(read_source(data), budget or Budget(), "normalized").encoded
    assert encoded is not None
    return encoded


def read_source(source: bytes | Path, max_bytes: int | None = None) -> bytes:
    """The bytes of `source`; NotAnImage for an empty, missing or unreadable file, and
    FileTooLarge (with the numbers) over `max_bytes`."""
    if isinstance(source, bytes | bytearray):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            if not path.is_file():
                raise NotAnImage("That file could not be read.")
            data = path.read_bytes()
        except OSError as error:
            raise NotAnImage("That file could not be read.") from error
    if not data:
        raise NotAnImage("That file is empty.")
    if max_bytes is not None and len(data) > max_bytes:
        raise too_many_bytes(len(data), max_bytes)
    return data


def too_many_bytes(size: int, limit: int) -> FileTooLarge:
    """FileTooLarge for a `size`-byte file over a `limit`-byte limit, both in MiB (as Telegram
    counts its 20 MB), the size rounded up so it never reads as equal to the limit."""
    megabytes, limit_megabytes = -(-size // (1024 * 1024)), limit // (1024 * 1024)
    return FileTooLarge(
        f"That file is {megabytes} MB; the limit is {limit_megabytes} MB.",
        megabytes=megabytes,
        limit_megabytes=limit_megabytes,
    )
