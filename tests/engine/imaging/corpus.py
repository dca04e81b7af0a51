"""A seeded fuzz corpus for the image door: the same ≥ 1,000 inputs on every run.

Families (each input is tagged with one): mutated files of every format the door meets (byte
flips, more of them near the header), truncations, lying headers, decompression bombs, many
frames, odd modes, broken EXIF/ICC, polyglots and non-images. Bases are small, so the whole
corpus is generated in about a second and each decode is cheap; the bombs and the costly
families are sized to hit the budgets, not the test's wall clock.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Iterator

from PIL import Image

from tests.engine.imaging import samples
from tests.engine.imaging.samples import encode, gradient

SEED = 12


def bases() -> dict[str, bytes]:
    """One small valid file per format/variant the door takes (and a few it refuses)."""
    rgb, rgba = gradient(), gradient(mode="RGBA")
    frames = [gradient().rotate(angle) for angle in (0, 90, 180)]
    return {
        "jpeg": encode(rgb, "JPEG", quality=85),
        "jpeg-progressive": encode(rgb, "JPEG", quality=85, progressive=True),
        "jpeg-cmyk": encode(rgb.convert("CMYK"), "JPEG"),
        "png": encode(rgb, "PNG"),
        "png-rgba": encode(rgba, "PNG"),
        "png-palette": encode(rgb.convert("P"), "PNG", transparency=0),
        "png-16bit": encode(gradient(mode="I;16"), "PNG"),
        "webp-lossy": encode(rgb, "WEBP", quality=80),
        "webp-lossless": encode(rgba, "WEBP", lossless=True),
        "gif": encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        "tiff": encode(rgb, "TIFF"),
        "tiff-lzw": encode(rgb, "TIFF", compression="tiff_lzw"),
        "tiff-16bit": encode(gradient(mode="I;16"), "TIFF"),
        "bmp": encode(rgb, "BMP"),
        "bmp-rle8": samples.rle8_bmp(48, 32),
        "avif": encode(rgb, "AVIF", quality=60),
        "heic": encode(rgb, "HEIF", quality=60),
        "ico": encode(rgb, "ICO", sizes=[(32, 32)]),
        "qoi": encode(rgb, "QOI"),
        "ppm": encode(rgb, "PPM"),
        "jpeg2000": encode(rgb, "JPEG2000"),
    }


def corpus() -> Iterator[tuple[str, str, bytes]]:
    """(family, name, bytes) for every input, in a fixed order."""
    rng = random.Random(SEED)
    files = bases()
    for name, data in files.items():
        yield "valid", name, data
        for index in range(28):
            yield f"mutated-{name}", f"{name}-flip{index}", _flip(rng, data)
        for index in range(8):
            cut = rng.randrange(1, len(data))
            yield f"truncated-{name}", f"{name}-cut{index}-{cut}", data[:cut]
    yield from _lying_headers(rng, files)
    yield from _bombs()
    yield from _many_frames()
    yield from _odd_modes()
    yield from _broken_metadata(rng, files["jpeg"])
    yield from _polyglots(files)
    yield from _non_images(rng)


def _flip(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 4, 8))):
        near_header = rng.random() < 0.5
        at = rng.randrange(min(len(out), 96) if near_header else len(out))
        out[at] = rng.randrange(256) if rng.random() < 0.7 else out[at] ^ (1 << rng.randrange(8))
    return bytes(out)


def _lying_headers(rng: random.Random, files: dict[str, bytes]) -> Iterator[tuple[str, str, bytes]]:
    sizes = [(1, 1), (8, 5000), (65535, 65535), (6000, 6000), (0, 32), (40000, 3), (16, 16)]
    for width, height in sizes:
        yield (
            "lying-header",
            f"jpeg-sof-{width}x{height}",
            samples.jpeg_with_sof_size(files["jpeg"], width, height),
        )
        png = bytearray(files["png"])
        struct.pack_into(">II", png, 16, width, height)
        struct.pack_into(">I", png, 29, zlib.crc32(bytes(png[12:29])))
        yield "lying-header", f"png-ihdr-{width}x{height}", bytes(png)
        bmp = bytearray(files["bmp"])
        struct.pack_into("<ii", bmp, 18, width, -height if rng.random() < 0.5 else height)
        yield "lying-header", f"bmp-{width}x{height}", bytes(bmp)
        gif = bytearray(files["gif"])
        struct.pack_into("<HH", gif, 6, min(width, 65535), min(height, 65535))
        yield "lying-header", f"gif-screen-{width}x{height}", bytes(gif)
        qoi = bytearray(files["qoi"])
        struct.pack_into(">II", qoi, 4, width, height)
        yield "lying-header", f"qoi-{width}x{height}", bytes(qoi)
        yield (
            "lying-header",
            f"ppm-{width}x{height}",
            b"P6\n%d %d\n255\n" % (width, height) + b"\x80" * 300,
        )
        ico = bytearray(files["ico"])
        ico[6], ico[7] = width % 256, height % 256
        yield "lying-header", f"ico-dir-{width}x{height}", bytes(ico)


def _bombs() -> Iterator[tuple[str, str, bytes]]:
    yield "bomb", "png-header-30000", samples.png_header_only(30_000, 30_000)
    yield "bomb", "png-header-12000", samples.png_header_only(12_000, 10_001)
    yield "bomb", "png-zeros-6000", samples.png_zero_bomb(6000)
    yield "bomb", "ico-png-13000", samples.ico_wrapping_png(samples.png_zero_bomb(13_000))
    yield "bomb", "bmp-rle8-6000", samples.rle8_bmp(6000, 6000)
    yield "bomb", "jpeg-600-scans", samples.progressive_with_repeated_scan(600)
    yield (
        "bomb",
        "jpeg-sof-6000-tiny-body",
        samples.jpeg_with_sof_size(encode(gradient((64, 64)), "JPEG"), 6000, 6000),
    )
    yield "bomb", "gif-screen-65535", _gif_screen(65535, 65535)
    yield "bomb", "tiff-60000", _tiff_claiming(60_000, 60_000)
    yield "bomb", "ppm-text-big", b"P3\n2000 2000\n255\n" + b"255 0 0 " * 40_000
    yield "bomb", "qoi-4000", samples.qoi_runs(4000, 4000)


def _gif_screen(width: int, height: int) -> bytes:
    data = bytearray(encode(gradient((16, 16)).convert("P"), "GIF"))
    struct.pack_into("<HH", data, 6, width, height)
    return bytes(data)


def _tiff_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(gradient((16, 16)), "TIFF"))
    count = struct.unpack_from("<H", data, struct.unpack_from("<I", data, 4)[0])[0]
    ifd = struct.unpack_from("<I", data, 4)[0] + 2
    for index in range(count):
        tag, kind = struct.unpack_from("<HH", data, ifd + 12 * index)
        if tag in (256, 257):
            value = width if tag == 256 else height
            if kind == 3:
                struct.pack_into(
                    "<HHIHH", data, ifd + 12 * index, tag, 4, 1, value & 0xFFFF, value >> 16
                )
            else:
                struct.pack_into("<I", data, ifd + 12 * index + 8, value)
    return bytes(data)


def _many_frames() -> Iterator[tuple[str, str, bytes]]:
    tiny = [Image.new("P", (16, 16), i % 256) for i in range(3000)]
    yield "many-frames", "gif-3000", encode(tiny[0], "GIF", save_all=True, append_images=tiny[1:])
    small = [gradient((32, 32)).rotate(i) for i in range(200)]
    yield (
        "many-frames",
        "webp-200",
        encode(small[0], "WEBP", save_all=True, append_images=small[1:]),
    )
    yield "many-frames", "apng-200", encode(small[0], "PNG", save_all=True, append_images=small[1:])
    yield (
        "many-frames",
        "tiff-300",
        encode(small[0], "TIFF", save_all=True, append_images=small[1:] * 2),
    )


def _odd_modes() -> Iterator[tuple[str, str, bytes]]:
    modes = [("1", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("P", "GIF"), ("I", "TIFF"), ("F", "TIFF")]
    modes += [
        ("CMYK", "TIFF"),
        ("I;16", "TIFF"),
        ("I;16B", "TIFF"),
        ("L", "JPEG"),
        ("RGBA", "TIFF"),
    ]
    modes += [("1", "BMP"), ("P", "BMP"), ("RGBA", "WEBP"), ("LA", "TIFF"), ("YCbCr", "TIFF")]
    modes += [("1", "PPM"), ("L", "PPM"), ("I;16", "PPM"), ("RGBA", "ICO"), ("L", "ICO")]
    for mode, fmt in modes:
        image = gradient((40, 24))
        image = (
            Image.new("F", image.size, 0.25)
            if mode == "F"
            else image.convert(mode)
            if mode not in ("I;16", "I;16B")
            else _grey16(mode)
        )
        yield "odd-mode", f"{fmt.lower()}-{mode}", encode(image, fmt)


def _grey16(mode: str) -> Image.Image:
    image = Image.new(mode, (40, 24))
    image.putdata([x * 1600 for _ in range(24) for x in range(40)])
    return image


def _broken_metadata(rng: random.Random, jpeg: bytes) -> Iterator[tuple[str, str, bytes]]:
    image = gradient()
    for index in range(20):
        junk = bytes(rng.randrange(256) for _ in range(rng.randrange(8, 400)))
        yield (
            "broken-exif",
            f"exif-junk-{index}",
            encode(image, "JPEG", exif=b"Exif\x00\x00" + junk),
        )
        yield "broken-icc", f"icc-junk-{index}", encode(image, "JPEG", icc_profile=junk)
        yield "broken-icc", f"png-icc-junk-{index}", encode(image, "PNG", icc_profile=junk)
    for turn in range(1, 9):
        exif = samples.jpeg_exif(turn, broken_entry_before=True)
        yield "broken-exif", f"exif-broken-ifd-{turn}", encode(image, "JPEG", exif=exif)
        yield (
            "broken-exif",
            f"exif-bad-orientation-{turn}",
            encode(image, "JPEG", exif=samples.jpeg_exif(turn * 37)),
        )


def _polyglots(files: dict[str, bytes]) -> Iterator[tuple[str, str, bytes]]:
    html = b"<html><script>alert(1)</script></html>"
    zipped = b"PK\x03\x04" + b"\0" * 26 + b"evil.txt" + b"owned" * 20
    for name in ("jpeg", "png", "gif", "webp-lossy", "bmp", "tiff", "ico", "heic"):
        yield "polyglot", f"{name}+html", files[name] + html
        yield "polyglot", f"{name}+zip", files[name] + zipped
        yield "polyglot", f"html+{name}", html + files[name]
    yield (
        "polyglot",
        "jpeg-comment-html",
        files["jpeg"][:2]
        + b"\xff\xfe"
        + struct.pack(">H", len(html) + 2)
        + html
        + files["jpeg"][2:],
    )
    yield "polyglot", "png-then-jpeg", files["png"] + files["jpeg"]


def _non_images(rng: random.Random) -> Iterator[tuple[str, str, bytes]]:
    texts = [b"hello\n" * 50, b"P6 is a film camera\n", b"BM is a brand name, not a bitmap\n" * 4]
    texts += [
        b"<!DOCTYPE html><html><body>not a picture</body></html>",
        b"%PDF-1.7\n%\xe2\xe3\n1 0 obj",
    ]
    texts += [b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\0" * 100]
    texts += [b"\x7fELF\x02\x01\x01" + b"\0" * 60, b"PK\x03\x04" + b"\0" * 100, b'{"json": true}']
    texts += [b"RIFF\x00\x00\x00\x00WAVEfmt ", b"\x00", "Привет, это не картинка".encode() * 5]
    for index, text in enumerate(texts):
        yield "non-image", f"text-{index}", text
    for index in range(30):
        yield (
            "non-image",
            f"random-{index}",
            bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000))),
        )
    stubs = [b"GIF8", b"\xff\xd8", b"\x89PNG", b"II*\x00", b"\x00\x00\x01\x00\x00\x00", b"qoif"]
    stubs += [b"<svg xmlns='http://www.w3.org/2000/svg'/>", b"8BPS", b"\xff\xd8\xff\xe0"]
    for index, stub in enumerate(stubs):
        yield "signature-only", f"stub-{index}", stub
