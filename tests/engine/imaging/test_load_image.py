"""engine.imaging: every odd or broken picture people send becomes RGB or a typed error."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from engine import imaging
from engine.errors import (
    CorruptImage,
    ImageError,
    ImageTooLarge,
    ImageTooSmall,
    NotAnImage,
    OrsayError,
)


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def _gradient(size: tuple[int, int] = (64, 48)) -> Image.Image:
    image = Image.new("RGB", size)
    image.putdata([(x * 4 % 256, y * 5 % 256, 128) for y in range(size[1]) for x in range(size[0])])
    return image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming a huge canvas, with a token IDAT: a 'bomb'."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _truncated_jpeg() -> bytes:
    data = _encode(_gradient((256, 192)), "JPEG", quality=90)
    return data[: len(data) // 2]


def _bad_crc_png() -> bytes:
    data = bytearray(_encode(_gradient(), "PNG"))
    data[-20] ^= 0xFF  # inside the last IDAT / its CRC
    return bytes(data)


BAD_INPUTS: list[tuple[str, Callable[[], bytes], type[ImageError]]] = [
    ("zero-bytes", lambda: b"", NotAnImage),
    ("text-file", lambda: b"hello, this is not a picture\n" * 20, NotAnImage),
    ("html-page", lambda: b"<!DOCTYPE html><html><body><img src=x></body></html>", NotAnImage),
    ("eps-not-allowed", lambda: b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", NotAnImage),
    ("truncated-jpeg", _truncated_jpeg, CorruptImage),
    ("png-bad-crc", _bad_crc_png, CorruptImage),
    ("one-pixel-png", lambda: _encode(Image.new("RGB", (1, 1), "red"), "PNG"), ImageTooSmall),
    ("thin-strip-png", lambda: _encode(Image.new("RGB", (500, 8)), "PNG"), ImageTooSmall),
    ("bomb-over-pillow-limit", lambda: _png_header_only(30_000, 30_000), ImageTooLarge),
    ("bomb-over-our-limit", lambda: _png_header_only(12_000, 10_001), ImageTooLarge),
]


@pytest.mark.parametrize(
    ("name", "make", "error"), BAD_INPUTS, ids=[name for name, _, _ in BAD_INPUTS]
)
@pytest.mark.parametrize("as_path", [False, True], ids=["bytes", "path"])
def test_bad_inputs_raise_typed_user_safe_errors(
    tmp_path: Path,
    name: str,
    make: Callable[[], bytes],
    error: type[ImageError],
    as_path: bool,
) -> None:
    data = make()
    path = tmp_path / f"{name}.jpg"
    path.write_bytes(data)
    with pytest.raises(error) as caught:
        imaging.load_image(path if as_path else data)
    message = str(caught.value)
    assert message and str(tmp_path) not in message and name not in message
    assert "Traceback" not in message and "PIL" not in message
    assert isinstance(caught.value, OrsayError)


@pytest.mark.parametrize("name", ["nope.png", "."])
def test_missing_file_or_folder_is_not_an_image(tmp_path: Path, name: str) -> None:
    with pytest.raises(NotAnImage) as caught:
        imaging.load_image(tmp_path / name)
    assert str(tmp_path) not in str(caught.value)


def test_limits_are_parameters() -> None:
    data = _encode(Image.new("RGB", (100, 50)), "PNG")
    assert imaging.load_image(data).size == (100, 50)
    with pytest.raises(ImageTooLarge):
        imaging.load_image(data, max_pixels=4_999)
    with pytest.raises(ImageTooSmall):
        imaging.load_image(data, min_side=51)


def test_cmyk_jpeg_becomes_rgb_with_the_right_colour() -> None:
    red_in_cmyk = Image.new("CMYK", (32, 32), (0, 255, 255, 0))
    image = imaging.load_image(_encode(red_in_cmyk, "JPEG", quality=95))
    assert image.mode == "RGB"
    r, g, b = image.getpixel((16, 16))  # type: ignore[misc]
    assert r > 230 and g < 30 and b < 30


def test_16bit_png_is_scaled_not_clipped() -> None:
    ramp = Image.new("I;16", (64, 16))
    ramp.putdata([x * 1000 for _ in range(16) for x in range(64)])  # 0 … 63000
    data = _encode(ramp, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    image = imaging.load_image(data)
    assert image.mode == "RGB"
    row = [image.getpixel((x, 8))[0] for x in range(64)]  # type: ignore[index]
    assert row[0] == 0
    assert row[40] == round(40_000 / 257)  # Pillow's own convert("L") would give 255
    assert row[63] == round(63_000 / 257)
    assert row == sorted(row) and len(set(row)) == 64


def test_float_and_int_modes() -> None:
    floats = Image.new("F", (20, 20), 0.5)
    assert imaging.load_image(_encode(floats, "TIFF")).getpixel((3, 3)) == (128, 128, 128)
    ints = Image.new("I", (20, 20), 200)
    assert imaging.to_rgb(ints).getpixel((3, 3)) == (200, 200, 200)
    wide = Image.new("I", (20, 20), -5)
    wide.putpixel((0, 0), 100_000)
    stretched = imaging.to_rgb(wide)
    assert stretched.getpixel((0, 0)) == (255, 255, 255)
    assert stretched.getpixel((5, 5)) == (0, 0, 0)


def test_palette_gif_transparency_is_white() -> None:
    palette = Image.new("P", (32, 32), 1)
    palette.putpalette([0, 0, 0, 255, 0, 0] + [0, 0, 0] * 254)
    for x in range(16):
        for y in range(32):
            palette.putpixel((x, y), 0)  # left half: index 0, made transparent
    image = imaging.load_image(_encode(palette, "GIF", transparency=0))
    assert image.mode == "RGB"
    assert image.getpixel((4, 4)) == (255, 255, 255)
    assert image.getpixel((24, 4)) == (255, 0, 0)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_composited_on_white(mode: str) -> None:
    source = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    for x in range(16, 32):
        for y in range(32):
            source.putpixel((x, y), (0, 0, 0, 255))
    image = imaging.load_image(_encode(source.convert(mode), "PNG"))
    assert image.getpixel((2, 2)) == (255, 255, 255)
    assert image.getpixel((30, 2)) == (0, 0, 0)


def test_grayscale_and_bilevel() -> None:
    assert imaging.load_image(_encode(Image.new("L", (20, 20), 77), "PNG")).getpixel((1, 1)) == (
        77,
        77,
        77,
    )
    assert imaging.load_image(_encode(Image.new("1", (20, 20), 1), "PNG")).getpixel((1, 1)) == (
        255,
        255,
        255,
    )


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (24, 24), colour) for colour in ("red", "lime", "blue")]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3
    image = imaging.load_image(data)
    assert image.mode == "RGB" and image.size == (24, 24)
    assert image.getpixel((12, 12)) == (255, 0, 0)


def test_exif_rotated_jpeg_is_turned_upright() -> None:
    # Stored landscape with a red left edge; orientation 6 means "rotate 90° clockwise to view",
    # which puts that edge at the top of a portrait picture.
    stored = Image.new("RGB", (80, 40), "white")
    for x in range(10):
        for y in range(40):
            stored.putpixel((x, y), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    image = imaging.load_image(_encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert image.size == (40, 80)
    top = image.getpixel((20, 3))
    bottom = image.getpixel((20, 76))
    assert top[0] > 200 and top[1] < 60  # type: ignore[index]
    assert bottom == pytest.approx((255, 255, 255), abs=8)


def test_embedded_icc_profile_is_applied() -> None:
    from PIL import ImageCms

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = imaging.load_image(_encode(_gradient(), "PNG", icc_profile=srgb))
    plain = imaging.load_image(_encode(_gradient(), "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((10, 10)) == pytest.approx(plain.getpixel((10, 10)), abs=2)


def test_path_and_bytes_agree(tmp_path: Path) -> None:
    data = _encode(_gradient(), "PNG")
    (tmp_path / "g.png").write_bytes(data)
    assert imaging.load_image(tmp_path / "g.png").tobytes() == imaging.load_image(data).tobytes()


def test_real_photo_and_painting(test_data: Path) -> None:
    photo = imaging.load_image(test_data / "photos" / "grace-hopper.jpg")
    painting = imaging.load_image(test_data / "artworks" / "munch-the-scream.jpg")
    assert photo.mode == painting.mode == "RGB"
    assert painting.size == (1200, 1528)


def test_encoders_round_trip() -> None:
    image = _gradient()
    jpeg = imaging.encode_jpeg(image)
    png = imaging.encode_png(image)
    assert jpeg[:3] == b"\xff\xd8\xff" and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert Image.open(io.BytesIO(png)).tobytes() == image.tobytes()
    decoded = Image.open(io.BytesIO(jpeg))
    assert decoded.size == image.size
    assert len(imaging.encode_jpeg(image, quality=40)) < len(jpeg)
    assert imaging.encode_png(image.convert("RGBA"))[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("name", "fmt"), [("a.jpg", "JPEG"), ("b.JPEG", "JPEG"), ("c.png", "PNG"), ("d.webp", "WEBP")]
)
def test_save_image_picks_format_from_suffix(tmp_path: Path, name: str, fmt: str) -> None:
    target = imaging.save_image(_gradient(), tmp_path / "deep" / "er" / name)
    assert target.is_file()
    with Image.open(target) as written:
        assert written.format == fmt and written.size == (64, 48)
    assert [p.name for p in target.parent.iterdir()] == [name]  # no temporary left behind


def test_save_image_refuses_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(OrsayError, match=r"use \.jpeg, \.jpg, \.png, \.webp"):
        imaging.save_image(_gradient(), tmp_path / "out.bmp")
    assert not list(tmp_path.iterdir())
