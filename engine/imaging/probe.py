"""Header checks before any pixel is decoded: what a file claims, and whether its body could
possibly hold it.

Pillow reads sizes from headers, but three things it does not check cost real time or memory:
a JPEG's scan count and coefficient buffer, a PNG or JPEG whose body is far too short for the
size it claims (libjpeg fills the missing part with grey instead of failing), and an ICO's
embedded pictures, whose real size can differ from its directory. Each check here reads bytes
only, so a 20 MB file costs milliseconds.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

from engine.errors import CorruptImage, ImageTooCostly, ImageTooLarge
from engine.imaging.budget import MAX_JPEG_SCANS, Budget

# A marker is 0xFF followed by anything but 0x00 (stuffing), 0xFF (fill) or RSTn.
_JPEG_MARKER = re.compile(rb"\xff[^\x00\xff\xd0-\xd7]")
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_HUFFMAN_DCT = {0xC0, 0xC1, 0xC2}
_DEFLATE_MAX_RATIO = 1032  # zlib's theoretical best: 258 bytes per 2-bit code


@dataclass(frozen=True)
class JpegHeader:
    width: int
    height: int
    process: int  # the SOF marker
    sampling: tuple[tuple[int, int], ...]
    scans: int
    entropy_bytes: int

    def blocks(self) -> int:
        """8×8 blocks of all components, as libjpeg allocates them."""
        hmax = max(h for h, _ in self.sampling)
        vmax = max(v for _, v in self.sampling)
        return sum(
            math.ceil(math.ceil(self.width * h / hmax) / 8)
            * math.ceil(math.ceil(self.height * v / vmax) / 8)
            for h, v in self.sampling
        )


def parse_jpeg(data: bytes) -> JpegHeader:
    """Walk a JPEG's markers: the frame header, and the number and size of its scans."""
    pos, frame, scans, entropy = 2, None, 0, 0
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise CorruptImage("JPEG marker expected")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            break
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2:
            raise CorruptImage("JPEG segment too short")
        segment = data[pos + 4 : pos + 2 + length]
        if marker in _SOF and frame is None:
            frame = _frame(marker, segment)
        pos += 2 + length
        if marker == 0xDA:
            if frame is None:
                raise CorruptImage("JPEG scan before its frame header")
            scans += 1
            found = _JPEG_MARKER.search(data, pos)
            end = found.start() if found else len(data)
            entropy += end - pos
            pos = end
    if frame is None:
        raise CorruptImage("JPEG without a frame header")
    return JpegHeader(*frame, scans=scans, entropy_bytes=entropy)


def _frame(marker: int, segment: bytes) -> tuple[int, int, int, tuple[tuple[int, int], ...]]:
    if len(segment) < 6:
        raise CorruptImage("JPEG frame header too short")
    _precision, height, width, count = struct.unpack_from(">BHHB", segment)
    if width == 0 or height == 0 or count == 0 or len(segment) < 6 + 3 * count:
        raise CorruptImage("JPEG frame header without a size")
    sampling = tuple(
        (max(segment[7 + 3 * i] >> 4, 1), max(segment[7 + 3 * i] & 15, 1)) for i in range(count)
    )
    return width, height, marker, sampling


def check_jpeg(data: bytes, budget: Budget) -> JpegHeader:
    """Refuse a JPEG whose body is too short for its size, or whose decode cannot be bounded.

    Every Huffman-coded block costs at least one bit (a DC code), so fewer entropy-coded bytes
    than blocks/8 means the picture is mostly missing. A progressive (or multi-scan) JPEG makes
    libjpeg hold 128 bytes a block for the whole picture whatever the output scale, and decode
    every scan over all of it."""
    header = parse_jpeg(data)
    blocks = header.blocks()
    if header.scans == 0:
        raise CorruptImage("JPEG without image data")
    if header.process in _HUFFMAN_DCT and header.entropy_bytes * 8 < blocks:
        raise CorruptImage("JPEG body too short for its size")
    if header.scans > MAX_JPEG_SCANS:
        raise ImageTooCostly(f"JPEG with {header.scans} scans")
    if header.scans > 1 and blocks * 128 > budget.memory_bytes // 2:
        raise ImageTooCostly("progressive JPEG too large to decode")
    return header


def check_png(data: bytes, budget: Budget) -> None:
    """Refuse a PNG that claims too many pixels, or whose compressed data could not hold them
    even at deflate's best ratio (a 'bomb' header over a token IDAT)."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        raise CorruptImage("PNG without a header")
    width, height, depth, colour = struct.unpack_from(">IIBB", data, 16)
    check_pixels(width, height, budget)
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 4)
    raw = height * (1 + math.ceil(width * channels * depth / 8))
    pos, compressed = 8, 0
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = data[pos + 4 : pos + 8]
        if kind == b"IDAT":
            compressed += length
        elif kind == b"IEND":
            break
        pos += 12 + length
    if compressed * _DEFLATE_MAX_RATIO + 4096 < raw:
        raise CorruptImage("PNG data too short for its size")


def check_ico(data: bytes, budget: Budget) -> None:
    """Check the real size of every picture inside an ICO (PNG or BMP), not its directory's."""
    (count,) = struct.unpack_from("<H", data, 4)
    if count == 0 or len(data) < 6 + 16 * count:
        raise CorruptImage("ICO directory truncated")
    for index in range(count):
        _size, offset = struct.unpack_from("<II", data, 6 + 16 * index + 8)
        inner = data[offset : offset + 24]
        if inner.startswith(b"\x89PNG\r\n\x1a\n") and len(inner) >= 24:
            width, height = struct.unpack_from(">II", inner, 16)
        elif len(inner) >= 12:
            width, signed_height = struct.unpack_from("<ii", inner, 4)
            height = abs(signed_height) // 2  # the AND mask doubles a BMP entry's height
        else:
            raise CorruptImage("ICO entry outside the file")
        check_pixels(abs(width), height, budget)


def check_bmp(data: bytes, budget: Budget) -> None:
    """RLE-compressed BMPs go through Pillow's pure-Python decoder: bound their size."""
    if len(data) < 34:
        return  # Pillow refuses it
    header_size, width, height = struct.unpack_from("<Iii", data, 14)
    if header_size < 40:
        return
    (compression,) = struct.unpack_from("<I", data, 30)
    pixels = abs(width) * abs(height)
    check_pixels(abs(width), abs(height), budget)
    if compression in (1, 2) and pixels > budget.max_rle_bmp_pixels:
        raise ImageTooCostly(f"RLE BMP of {pixels} pixels")


def check_pixels(width: int, height: int, budget: Budget) -> None:
    """The pixel budget of full-size decodes, with the numbers for the message."""
    if width * height > budget.max_pixels:
        raise ImageTooLarge(
            f"That picture is too large to process ({width}×{height}; "
            f"the limit is {budget.max_pixels // 1_000_000} megapixels).",
            width=width,
            height=height,
            megapixels=math.ceil(width * height / 1_000_000),
            limit_megapixels=budget.max_pixels // 1_000_000,
        )
