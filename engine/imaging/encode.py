"""Writing pictures: JPEG/PNG bytes for Telegram and the queue, files for the CLI, atomically."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from PIL import Image

from engine.errors import OrsayError
from engine.imaging.convert import to_rgb

OUTPUT_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}


def encode_jpeg(image: Image.Image, quality: int = 92) -> bytes:
    """JPEG bytes; full-resolution chroma at high quality because painted edges are colourful."""
    buffer = io.BytesIO()
    subsampling = 0 if quality >= 90 else 2
    to_rgb(image).save(buffer, "JPEG", quality=quality, subsampling=subsampling, optimize=True)
    return buffer.getvalue()


def encode_png(image: Image.Image) -> bytes:
    """Lossless PNG bytes of the RGB picture."""
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
