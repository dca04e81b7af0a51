"""Files like the ones people really send must all be accepted, upright and the right size.

The large ones (48 and 108 MP JPEGs, a 16384×3840 panorama) are generated once per session
in a temporary folder: flat colour with a red top-left block encodes fast and small, and the
block tells which way up the result is."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from engine import imaging
from tests.engine.imaging.samples import encode, gradient, jpeg_exif

RED = (255, 0, 0)
TRANSPOSE_BACK = {  # stored = displayed.transpose(this), so that orientation n shows `displayed`
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def marked(size: tuple[int, int]) -> Image.Image:
    """Blue with a red block in the top-left quarter."""
    image = Image.new("RGB", size, (40, 90, 200))
    image.paste(RED, (0, 0, size[0] // 4, size[1] // 4))
    return image


def stored_for(orientation: int, size: tuple[int, int] = (240, 160)) -> Image.Image:
    method = TRANSPOSE_BACK[orientation]
    shown = marked(size)
    return shown.transpose(method) if method is not None else shown


@pytest.fixture(scope="session")
def big_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("real-world")
    made = {}
    for name, size in (("jpeg-48mp", (8000, 6000)), ("jpeg-108mp", (12000, 9000))):
        made[name] = folder / f"{name}.jpg"
        made[name].write_bytes(encode(marked(size), "JPEG", quality=90))
    made["panorama"] = folder / "panorama.jpg"
    made["panorama"].write_bytes(encode(marked((16384, 3840)), "JPEG", quality=85))
    made["panorama-png"] = folder / "panorama.png"
    made["panorama-png"].write_bytes(encode(marked((16384, 3840)), "PNG", compress_level=1))
    return made


def _alpha_png() -> bytes:
    image = marked((300, 200)).convert("RGBA")
    image.putalpha(255)
    return encode(image, "PNG")


def _tiff16() -> bytes:
    image = Image.new("I;16", (300, 200))
    image.putdata([60000 if x < 75 and y < 50 else 8000 for y in range(200) for x in range(300)])
    return encode(image, "TIFF")


SMALL: dict[str, Callable[[], bytes]] = {
    "heic": lambda: encode(marked((640, 480)), "HEIF", quality=80),
    "avif": lambda: encode(marked((640, 480)), "AVIF", quality=80),
    "webp": lambda: encode(marked((640, 480)), "WEBP", quality=80),
    "alpha-png": _alpha_png,
    "tiff-16bit": _tiff16,
    "gif": lambda: encode(marked((320, 240)).convert("P"), "GIF"),
}


def _assert_upright(image: Image.Image, size: tuple[int, int]) -> None:
    assert image.mode == "RGB" and image.size == size
    width, height = size
    corner = image.getpixel((width // 10, height // 10))
    opposite = image.getpixel((width - width // 10, height - height // 10))
    assert corner[0] > 180 and corner[2] < 90, corner  # type: ignore[index]
    assert opposite[0] < 120, opposite  # type: ignore[index]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("jpeg-48mp", (4000, 3000)),  # drafted at 1/2: ≥ 70 % of 4096, never upscaled
        ("jpeg-108mp", (3000, 2250)),  # drafted at 1/4: 73 % of 4096, the cheapest scale ≥ 70 %
        ("panorama", (4096, 960)),
        ("panorama-png", (4096, 960)),
    ],
)
def test_big_photos_are_accepted_at_the_normalised_size(
    big_files: dict[str, Path], name: str, expected: tuple[int, int]
) -> None:
    image = imaging.load_image(big_files[name])
    _assert_upright(image, expected)
    assert max(image.size) <= imaging.MAX_SIDE


@pytest.mark.parametrize("name", sorted(SMALL))
def test_phone_and_web_formats_are_accepted(name: str) -> None:
    data = SMALL[name]()
    image = imaging.load_image(data)
    if name == "tiff-16bit":  # grey: bright corner block on a dark field
        assert image.size == (300, 200)
        assert image.getpixel((10, 10))[0] > 200 and image.getpixel((290, 190))[0] < 60  # type: ignore[index]
        return
    _assert_upright(image, Image.open(io.BytesIO(data)).size)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("broken_entry", [False, True], ids=["clean-exif", "broken-ifd0-entry"])
def test_every_exif_orientation_comes_out_upright(orientation: int, broken_entry: bool) -> None:
    exif = jpeg_exif(orientation, broken_entry_before=broken_entry)
    data = encode(stored_for(orientation), "JPEG", quality=95, exif=exif)
    _assert_upright(imaging.load_image(data), (240, 160))


def test_normalize_passes_small_plain_jpegs_through_and_turns_the_rest() -> None:
    plain = encode(gradient((320, 240)), "JPEG", quality=90)
    assert imaging.normalize(plain) == plain  # nothing to change: no second lossy encode
    turned = encode(stored_for(6), "JPEG", quality=95, exif=jpeg_exif(6))
    normal = imaging.normalize(turned)
    assert normal != turned and normal[:3] == b"\xff\xd8\xff"
    _assert_upright(imaging.load_image(normal), (240, 160))


def test_normalized_big_photo_is_one_cheap_decode_for_the_painter(
    big_files: dict[str, Path],
) -> None:
    normal = imaging.normalize(big_files["jpeg-108mp"].read_bytes())
    with Image.open(io.BytesIO(normal)) as opened:
        assert opened.format == "JPEG" and opened.size == (3000, 2250)
    _assert_upright(imaging.load_image(normal), (3000, 2250))
