"""The one door every picture comes through: photos, uploaded styles and gallery files.

Whatever people send (phone JPEGs lying on their side, PNGs with alpha, 16-bit scans, GIFs,
truncated uploads, HTML saved as .jpg), the painter gets a plain upright RGB image or a typed
`ImageError` whose message is safe to show a user. No torch here: the bot imports this.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from engine.errors import CorruptImage, ImageTooLarge, ImageTooSmall, NotAnImage, OrsayError

# Formats a person plausibly sends. An allow-list keeps Pillow away from EPS (Ghostscript) and
# other exotic decoders that have no business seeing untrusted uploads.
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "DIB", "TIFF", "PPM", "AVIF", "ICO", "QOI")
WHITE = (255, 255, 255)
OUTPUT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}

_NOT_AN_IMAGE = "That file is not a picture I can read. Please send a JPEG, PNG or WebP image."
_CORRUPT = "That picture is damaged or incomplete (maybe the upload was cut short)."


def load_image(
    source: bytes | Path, *, max_pixels: int = 40_000_000, min_side: int = 16
) -> Image.Image:
    """Decode `source` fully into an upright RGB image (first frame of animations).

    Raises NotAnImage, CorruptImage, ImageTooLarge (more than `max_pixels`, checked from the
    header before any decoding) or ImageTooSmall (a side under `min_side`)."""
    if isinstance(source, bytes | bytearray):
        if not source:
            raise NotAnImage("That file is empty.")
        stream: io.BytesIO | Path = io.BytesIO(source)
    else:
        stream = Path(source)
        try:
            if not stream.is_file():
                raise NotAnImage("That file could not be read.")
            if stream.stat().st_size == 0:
                raise NotAnImage("That file is empty.")
        except OSError as error:
            raise NotAnImage("That file could not be read.") from error
    try:
        with Image.open(stream, formats=FORMATS) as opened:
            _check_size(opened.size, max_pixels, min_side)
            opened.seek(0)  # animated images: the first frame is the picture
            opened.load()  # force the full decode here, so truncation surfaces now
            image = _to_srgb(_upright(opened))
            return to_rgb(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageTooLarge(
            f"That picture is too large to process (over {max_pixels // 1_000_000} megapixels)."
        ) from error
    except UnidentifiedImageError as error:
        raise NotAnImage(_NOT_AN_IMAGE) from error
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as error:
        # Pillow reports truncation and bad data with any of these; none carry a user-safe text.
        raise CorruptImage(_CORRUPT) from error


def _check_size(size: tuple[int, int], max_pixels: int, min_side: int) -> None:
    width, height = size
    if width * height > max_pixels:
        raise ImageTooLarge(
            f"That picture is too large to process ({width}×{height}; "
            f"the limit is {max_pixels // 1_000_000} megapixels)."
        )
    if min(width, height) < min_side:
        raise ImageTooSmall(
            f"That picture is too small ({width}×{height}); "
            f"each side needs at least {min_side} pixels."
        )


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block is not worth refusing the photo for."""
    try:
        return ImageOps.exif_transpose(image) or image
    except Exception:
        return image


def _to_srgb(image: Image.Image) -> Image.Image:
    """Honour an embedded colour profile (Display P3 phone photos, CMYK print files), so the
    painter sees the colours the person sees; an unreadable profile is ignored."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    try:
        converted = ImageCms.profileToProfile(
            image,
            ImageCms.ImageCmsProfile(io.BytesIO(icc)),
            _SRGB,
            outputMode="RGBA" if image.mode == "RGBA" else "RGB",
        )
    except Exception:  # broken or unsupported profiles are common in the wild
        return image
    return converted or image


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode → 8-bit RGB: transparency over white, high bit depths scaled, not clipped."""
    mode = image.mode
    if mode == "RGB":
        return image.copy() if image.readonly else image
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB", "1") and "transparency" in image.info
    ):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode.startswith("I;16") or mode == "I":
        return _scale_to_l(image.convert("I")).convert("RGB")
    if mode == "F":
        return _scale_to_l(image).convert("RGB")
    return image.convert("RGB")


def _scale_to_l(image: Image.Image) -> Image.Image:
    """Map a 32-bit int or float single-band image to 8 bits by its plausible range.

    Pillow's own conversion clips (a 16-bit value of 40000 would become 255), so guess the
    range: values within [0, 1] are floats in unit range, within [0, 255] already 8-bit, within
    [0, 65535] 16-bit; anything else is stretched from its minimum to its maximum."""
    extrema = image.getextrema()  # single band: (min, max)
    low, high = float(extrema[0]), float(extrema[1])  # type: ignore[arg-type]
    if image.mode == "F" and low >= 0 and high <= 1:
        offset, scale = 0.0, 255.0
    elif low >= 0 and high <= 255:
        offset, scale = 0.0, 1.0
    elif low >= 0 and high <= 65535:
        offset, scale = 0.0, 1 / 257
    else:
        offset, scale = low, 255.0 / max(high - low, 1e-12)
    return image.point(lambda value: (value - offset) * scale + 0.5).convert("L")


def encode_jpeg(image: Image.Image, quality: int = 92) -> bytes:
    """JPEG bytes; full-resolution chroma at high quality because painted edges are colourful."""
    buffer = io.BytesIO()
    subsampling = 0 if quality >= 90 else 2
    to_rgb(image).save(buffer, "JPEG", quality=quality, subsampling=subsampling, optimize=True)
    return buffer.getvalue()


def encode_png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    to_rgb(image).save(buffer, "PNG", optimize=False)
    return buffer.getvalue()


def output_format(path: Path) -> str:
    """The Pillow format for an output path's suffix; checked before a long run, not after."""
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        choices = ", ".join(sorted(OUTPUT_FORMATS))
        raise OrsayError(f"cannot write {path.suffix or 'files without a suffix'}; use {choices}")
    return fmt


def save_image(image: Image.Image, path: Path, *, quality: int = 92) -> Path:
    """Write `image` in the format its suffix names, atomically (no half-written output)."""
    path = Path(path)
    fmt = output_format(path)
    if fmt == "JPEG":
        data = encode_jpeg(image, quality)
    elif fmt == "PNG":
        data = encode_png(image)
    else:
        buffer = io.BytesIO()
        to_rgb(image).save(buffer, fmt, quality=quality)
        data = buffer.getvalue()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, data)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # read once at import: os.umask cannot be read thread-safely


def atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so readers never see half a file; the result
    gets the usual permissions (mkstemp's are owner-only)."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.chmod(temporary, _FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
