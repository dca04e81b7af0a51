"""What one decode may cost, whatever the file: the numbers every other imaging module obeys.

MAX_SIDE is 4096 because that is the largest output the operator may configure (ORSAY_MAX_SIZE
is capped at 4096) and the painter never needs its input larger than its output; a 48 MP photo
normalised to 4096×3072 is 36 MiB of RGB instead of 138 MiB.

MAX_PIXELS applies to formats that must be decoded at full size (PNG, WebP, TIFF, GIF, HEIC,
AVIF, BMP, PPM, ICO): at most 4 bytes a pixel once decoded (RGBA, CMYK, 32-bit grey), 120 MP is
at most 480 MB, which leaves room in MEMORY_BYTES for the smaller normalised copy. It admits a
16384×3840 panorama (63 MP), a 108 MP phone photo saved as PNG and every HEIC a phone makes.
JPEG has no pixel limit: it is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's DCT scaling), so
even a 65535×65535 JPEG lands at 8192×8192; progressive JPEGs are the exception because
libjpeg keeps every coefficient of the whole picture (see probe.py).

CPU_SECONDS and WALL_SECONDS bound a hostile file: the largest legitimate photo we measured
decodes in well under a second (bench/decode.py), so a file that needs more than six CPU-seconds
is not a photo worth waiting for. WALL_SECONDS is larger to survive a busy machine.

`Stats` is the other side of the ledger: what one decode did cost, measured in the child that
ran it (here, below sandbox.py and child.py, because both use it).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_SIDE = 4096
MAX_PIXELS = 120_000_000
MIN_SIDE = 16
MEMORY_BYTES = 1536 * 1024 * 1024
CPU_SECONDS = 6
WALL_SECONDS = 20.0
MAX_RLE_BMP_PIXELS = 4_000_000  # Pillow's RLE BMP decoder is Python: ~0.1 µs a pixel
MAX_JPEG_SCANS = 64  # encoders write ≤ 12; each scan is a pass over the whole picture


@dataclass(frozen=True)
class Budget:
    """Limits of one decode; every field is a parameter so tests and the CLI can narrow them."""

    max_side: int = MAX_SIDE
    max_pixels: int = MAX_PIXELS
    min_side: int = MIN_SIDE
    memory_bytes: int = MEMORY_BYTES
    cpu_seconds: int = CPU_SECONDS
    wall_seconds: float = WALL_SECONDS
    max_rle_bmp_pixels: int = MAX_RLE_BMP_PIXELS


@dataclass(frozen=True)
class Stats:
    """What the decode cost, measured inside the child (for tests and bench/decode.py)."""

    cpu_s: float
    wall_s: float
    peak_bytes: int  # peak resident memory above the child's resident memory at start
