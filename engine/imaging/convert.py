"""From whatever Pillow decoded to plain upright sRGB: orientation, colour profile, mode."""

from __future__ import annotations

import io
import struct

from PIL import Image, ImageCms

WHITE = (255, 255, 255)
_ORIENTATION_TAG = 0x0112
_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def orientation(image: Image.Image) -> int:
    """The EXIF orientation (1–8; 1 when absent or unreadable).

    Read from the raw IFD0 first: Pillow's parser drops the whole IFD when one entry before
    Orientation is broken, which turned such photos sideways. Pillow's reading is the fallback
    (TIFF keeps orientation in its own tags, not in an EXIF block)."""
    raw = image.info.get("exif")
    if isinstance(raw, bytes | bytearray):
        found = _raw_orientation(bytes(raw))
        if found:
            return found
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a broken EXIF block is not worth refusing the photo for
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _raw_orientation(raw: bytes) -> int | None:
    """Orientation from IFD0's entries, each read on its own so one broken entry is harmless."""
    tiff = raw[6:] if raw.startswith(b"Exif\x00\x00") else raw
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return None
    order = "<" if tiff[:2] == b"II" else ">"
    (offset,) = struct.unpack_from(order + "I", tiff, 4)
    if offset + 2 > len(tiff):
        return None
    (count,) = struct.unpack_from(order + "H", tiff, offset)
    for index in range(min(count, (len(tiff) - offset - 2) // 12)):
        entry = offset + 2 + 12 * index
        tag, kind, number = struct.unpack_from(order + "HHI", tiff, entry)
        if tag == _ORIENTATION_TAG and kind == 3 and number >= 1:
            (value,) = struct.unpack_from(order + "H", tiff, entry + 8)
            return value if 1 <= value <= 8 else None
    return None


def upright(image: Image.Image, turn: int) -> Image.Image:
    method = _TRANSPOSES.get(turn)
    return image.transpose(method) if method is not None else image


def to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """Honour an embedded colour profile (Display P3 phone photos, CMYK print files), so the
    painter sees the colours the person sees; an unreadable profile is ignored."""
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
