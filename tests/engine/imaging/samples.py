"""Small pictures in every format and mode the door meets, built with Pillow (and pillow-heif),
for the fuzz corpus and the hostile-file tests. Nothing here is stored in git."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def gradient(size: tuple[int, int] = (48, 32), mode: str = "RGB") -> Image.Image:
    width, height = size
    image = Image.new("RGB", size)
    image.putdata(
        [(x * 255 // width, y * 255 // height, 96) for y in range(height) for x in range(width)]
    )
    return image.convert(mode) if mode != "RGB" else image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming a huge canvas over a token IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + png_chunk(b"IEND", b"")
    )


def png_zero_bomb(side: int) -> bytes:
    """A real decompression bomb: side×side grey zeros, deflated to almost nothing."""
    row = b"\0" * (side + 1)
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", body)
        + png_chunk(b"IEND", b"")
    )


def rle8_bmp(width: int, height: int) -> bytes:
    """An RLE8 BMP whose every row is a handful of run bytes: tiny file, many pixels."""
    rows = bytearray()
    for _ in range(height):
        left = width
        while left > 0:
            run = min(255, left)
            rows += bytes((run, 1))
            left -= run
        rows += b"\x00\x00"  # end of line
    rows += b"\x00\x01"  # end of bitmap
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(rows), 2835, 2835, 256, 0)
    return (
        b"BM"
        + struct.pack("<IHHI", offset + len(rows), 0, 0, offset)
        + info
        + palette
        + bytes(rows)
    )


def ico_wrapping_png(png: bytes) -> bytes:
    """An ICO whose directory says 16×16 and whose one entry is `png`, whatever its size."""
    entry = struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 32, len(png), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + png


def progressive_with_repeated_scan(repeats: int, size: tuple[int, int] = (512, 384)) -> bytes:
    """A progressive JPEG whose last scan (with its tables) is replayed `repeats` times."""
    data = encode(gradient(size), "JPEG", progressive=True, quality=80)
    last = data.rfind(b"\xff\xda")
    end = data.rfind(b"\xff\xd9")
    return data[:end] + data[last:end] * repeats + data[end:]


def jpeg_with_sof_size(data: bytes, width: int, height: int) -> bytes:
    """`data` (a JPEG) with its frame header claiming width×height."""
    out = bytearray(data)
    for marker in (b"\xff\xc0", b"\xff\xc2", b"\xff\xc1"):
        at = out.find(marker)
        if at >= 0:
            struct.pack_into(">HH", out, at + 5, height, width)
            break
    return bytes(out)


def jpeg_exif(orientation: int, *, broken_entry_before: bool = False) -> bytes:
    """An EXIF block (APP1 payload) with IFD0 holding Orientation, optionally after an entry
    whose value offset points far outside the block (what breaks Pillow's IFD parser)."""
    entries = []
    if broken_entry_before:
        entries.append(struct.pack("<HHII", 0x010F, 2, 400, 0x7FFF0000))  # Make, bad offset
    entries.append(struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0))
    ifd = struct.pack("<H", len(entries)) + b"".join(entries) + struct.pack("<I", 0)
    return b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 8) + ifd


def qoi_runs(width: int, height: int) -> bytes:
    """A QOI file of black runs (Pillow's own QOI encoder is pure Python and slow)."""
    pixels = width * height
    body = bytes((0xC0 | 61,)) * (pixels // 62)
    if pixels % 62:
        body += bytes((0xC0 | (pixels % 62 - 1),))
    return b"qoif" + struct.pack(">IIBB", width, height, 3, 0) + body + b"\0" * 7 + b"\1"
