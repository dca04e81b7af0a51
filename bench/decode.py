"""Time and peak memory of the image door, per family: the largest legitimate photo of each
format, and the worst hostile file of each kind from issue 12.

    PYTHONPATH=. .venv/bin/python bench/decode.py            # prints a table
    PYTHONPATH=. .venv/bin/python bench/decode.py --json out.json

Each file goes through `engine.imaging.sandbox.run` as the bot's `normalize` does (a child
process per decode, its CPU time and peak resident memory above its start measured inside it)
and once as `load_image` (pixels back to the caller). "decoded MiB" is the size of the picture
as the decoder must hold it (after JPEG draft scaling), so "× decoded" shows how many copies
the pipeline keeps at its peak. Files are generated in memory, nothing is written.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from engine.errors import ImageError
from engine.imaging import Budget, sandbox
from tests.engine.imaging import samples
from tests.engine.imaging.samples import encode

MIB = 1024 * 1024


def flat(size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    image = Image.new("RGB", size, (40, 90, 200))
    image.paste((255, 0, 0), (0, 0, size[0] // 4, size[1] // 4))
    return image.convert(mode) if mode != "RGB" else image


def png_rgba16(width: int, height: int) -> bytes:
    """A 16-bit RGBA PNG (Pillow cannot write one): the issue's ~6-copies case."""
    row = b"\0" + b"\x12\x34" * 4 * width
    packer = zlib.compressobj(6)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + samples.png_chunk(b"IHDR", ihdr)
        + samples.png_chunk(b"IDAT", body)
        + samples.png_chunk(b"IEND", b"")
    )


# name → (maker, bytes per decoded pixel, decoded size or None for "as the header says")
LEGIT: dict[str, tuple[Callable[[], bytes], int, tuple[int, int] | None]] = {
    "JPEG 48 MP 8000x6000": (
        lambda: encode(flat((8000, 6000)), "JPEG", quality=92),
        3,
        (4000, 3000),
    ),
    "JPEG 108 MP 12000x9000": (
        lambda: encode(flat((12000, 9000)), "JPEG", quality=92),
        3,
        (3000, 2250),
    ),
    "JPEG panorama 16384x3840": (
        lambda: encode(flat((16384, 3840)), "JPEG", quality=90),
        3,
        (8192, 1920),
    ),
    "PNG panorama 16384x3840": (
        lambda: encode(flat((16384, 3840)), "PNG", compress_level=1),
        3,
        None,
    ),
    "PNG RGBA 16-bit 40 MP": (lambda: png_rgba16(7300, 5480), 4, None),
    "HEIC 12 MP 4032x3024": (lambda: encode(flat((4032, 3024)), "HEIF", quality=80), 3, None),
    "AVIF 12 MP 4032x3024": (
        lambda: encode(flat((4032, 3024)), "AVIF", quality=70, speed=10),
        3,
        None,
    ),
    "WebP 16383x4000": (lambda: encode(flat((16383, 4000)), "WEBP", quality=80), 3, None),
    "TIFF 16-bit grey 40 MP": (lambda: encode(flat((7300, 5480), "I;16"), "TIFF"), 2, None),
}
HOSTILE: dict[str, Callable[[], bytes]] = {
    "progressive JPEG, last scan x600": lambda: samples.progressive_with_repeated_scan(600),
    "JPEG SOF 6000x6000, 1 KB body": lambda: samples.jpeg_with_sof_size(
        encode(flat((64, 64)), "JPEG"), 6000, 6000
    ),
    "QOI 4000x4000": lambda: samples.qoi_runs(4000, 4000),
    "BMP RLE8 6000x6000": lambda: samples.rle8_bmp(6000, 6000),
    "BMP RLE8 2000x2000 (under the cap)": lambda: samples.rle8_bmp(2000, 2000),
    "text PPM 20 MB": lambda: b"P3\n4000 4000\n255\n" + b"255 0 0 " * 2_500_000,
    "ICO wrapping 13000x13000 PNG": lambda: samples.ico_wrapping_png(samples.png_zero_bomb(13_000)),
    "PNG zero bomb 10000x10000": lambda: samples.png_zero_bomb(10_000),
    "PNG header 30000x30000": lambda: samples.png_header_only(30_000, 30_000),
    "GIF 3000 frames": lambda: encode(
        Image.new("P", (16, 16)),
        "GIF",
        save_all=True,
        append_images=[Image.new("P", (16, 16), i % 256) for i in range(1, 3000)],
    ),
}


def measure(name: str, data: bytes, output: str) -> dict[str, object]:
    start = time.perf_counter()
    try:
        outcome = sandbox.run(data, Budget(), output)
        verdict = "accepted"
        size = outcome.image.size if outcome.image else None
        stats = outcome.stats
        cpu, peak = stats.cpu_s, stats.peak_bytes
    except ImageError as error:
        verdict, size, cpu, peak = error.code, None, None, None
    return {
        "name": name,
        "output": output,
        "bytes": len(data),
        "verdict": verdict,
        "size": size,
        "wall_s": round(time.perf_counter() - start, 3),
        "cpu_s": None if cpu is None else round(cpu, 3),
        "peak_mib": None if peak is None else round(peak / MIB, 1),
    }


def decoded_mib(data: bytes, per_pixel: int, size: tuple[int, int] | None) -> float:
    if size is None:
        import io

        import pillow_heif

        pillow_heif.register_heif_opener()
        with Image.open(io.BytesIO(data)) as opened:
            size = opened.size
    return round(size[0] * size[1] * per_pixel / MIB, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    rows = []
    for name, (make, per_pixel, size) in LEGIT.items():
        data = make()
        decoded = decoded_mib(data, per_pixel, size)
        for output in ("normalized", "pixels"):
            row = measure(name, data, output)
            row["decoded_mib"] = decoded
            rows.append(row)
    for name, make in HOSTILE.items():
        rows.append(measure(name, make(), "normalized"))
    print(
        f"{'file':38} {'out':10} {'MB':>6} {'verdict':18} {'wall s':>7} {'cpu s':>6} "
        f"{'peak MiB':>8} {'decoded':>8} {'×':>5}"
    )
    for row in rows:
        decoded = row.get("decoded_mib")
        ratio = f"{row['peak_mib'] / decoded:.2f}" if decoded and row["peak_mib"] else ""  # type: ignore[operator]
        print(
            f"{row['name']:38} {row['output']:10} {row['bytes'] / 1e6:6.2f} {row['verdict']:18} "
            f"{row['wall_s']:7.2f} {row['cpu_s'] if row['cpu_s'] is not None else '':>6} "
            f"{row['peak_mib'] if row['peak_mib'] is not None else '':>8} "
            f"{decoded or '':>8} {ratio:>5}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
