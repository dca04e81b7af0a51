"""The issue's hostile and mislabelled files: each refused quickly, with the true reason and the
numbers its message needs, in English and Russian."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from PIL import Image

from bot.texts import BUNDLES
from engine import errors, imaging
from engine.errors import ImageError
from tests.engine.imaging import samples
from tests.engine.imaging.samples import encode, gradient

QUICK_S = 3.0  # far under the budget: refused from the header, not by the time limit

CASES: list[tuple[str, Callable[[], bytes], type[ImageError], dict[str, object]]] = [
    (
        "jpeg-600-scans",
        lambda: samples.progressive_with_repeated_scan(600),
        errors.ImageTooCostly,
        {},
    ),
    ("qoi-4000", lambda: samples.qoi_runs(4000, 4000), errors.UnsupportedFormat, {"format": "QOI"}),
    ("bmp-rle8-6000", lambda: samples.rle8_bmp(6000, 6000), errors.ImageTooCostly, {}),
    (
        "text-ppm",
        lambda: b"P3\n2000 2000\n255\n" + b"255 0 0 " * 40_000,
        errors.UnsupportedFormat,
        {"format": "PPM (P3)"},
    ),
    (
        "ico-wrapping-13000-png",
        lambda: samples.ico_wrapping_png(samples.png_header_only(13_000, 13_000)),
        errors.ImageTooLarge,
        {"width": 13_000, "height": 13_000, "megapixels": 169, "limit_megapixels": 120},
    ),
    (
        "sof-6000-tiny-body",
        lambda: samples.jpeg_with_sof_size(encode(gradient((64, 64)), "JPEG"), 6000, 6000),
        errors.CorruptImage,
        {},
    ),
    (
        "banner-500x8",
        lambda: encode(Image.new("RGB", (500, 8)), "PNG"),
        errors.ImageTooSmall,
        {"width": 500, "height": 8, "min_side": 16},
    ),
    ("text-starting-P6", lambda: b"P6 is my favourite camera\n" * 3, errors.NotAnImage, {}),
    ("text-starting-BM", lambda: b"BM: notes from the board meeting\n" * 3, errors.NotAnImage, {}),
    (
        "jpeg-2000",
        lambda: encode(gradient(), "JPEG2000"),
        errors.UnsupportedFormat,
        {"format": "JPEG 2000"},
    ),
    (
        "psd",
        lambda: b"8BPS\x00\x01" + b"\x00" * 40,
        errors.UnsupportedFormat,
        {"format": "Photoshop PSD"},
    ),
]


@pytest.mark.parametrize(("name", "make", "error", "params"), CASES, ids=[c[0] for c in CASES])
def test_hostile_and_mislabelled_files(
    name: str, make: Callable[[], bytes], error: type[ImageError], params: dict[str, object]
) -> None:
    data = make()
    start = time.perf_counter()
    with pytest.raises(ImageError) as caught:
        imaging.load_image(data)
    assert time.perf_counter() - start < QUICK_S
    assert type(caught.value) is error and caught.value.params == params


def test_damaged_avif_is_corrupt_not_a_runtime_error() -> None:
    data = bytearray(encode(gradient((64, 64)), "AVIF", quality=60))
    verdicts = set()
    for at in range(40, len(data), max(1, len(data) // 60)):
        edited = bytearray(data)
        edited[at] ^= 0xFF
        try:
            imaging.load_image(bytes(edited))
            verdicts.add("ok")
        except ImageError as refused:
            verdicts.add(refused.code)
    assert verdicts <= {"ok", "corrupt_image", "image_too_large", "image_too_small", "not_an_image"}
    assert "corrupt_image" in verdicts


def test_file_over_the_byte_limit_says_so_with_numbers() -> None:
    with pytest.raises(errors.FileTooLarge) as caught:
        imaging.read_source(b"x" * (21 * 1024 * 1024 + 1), 20 * 1024 * 1024)
    assert caught.value.params == {"megabytes": 22, "limit_megabytes": 20}
    assert isinstance(caught.value, errors.ImageTooLarge)


@pytest.mark.parametrize(
    ("cpu_seconds", "wall_seconds"), [(30, 0.3), (1, 30.0)], ids=["wall-deadline", "cpu-limit"]
)
def test_a_decode_over_its_budget_is_stopped_typed(cpu_seconds: int, wall_seconds: float) -> None:
    # With the RLE-BMP cap lifted, a 10000×10000 RLE8 BMP reaches Pillow's Python RLE decoder,
    # which needs seconds of CPU for it: the kernel's CPU limit or the parent's deadline must
    # stop the child, and the caller gets ImageTooCostly.
    budget = imaging.Budget(
        cpu_seconds=cpu_seconds, wall_seconds=wall_seconds, max_rle_bmp_pixels=50_000_000
    )
    start = time.perf_counter()
    with pytest.raises(errors.ImageTooCostly):
        imaging.sandbox.run(samples.rle8_bmp(10_000, 10_000), budget)
    assert time.perf_counter() - start < min(wall_seconds, cpu_seconds * 4) + QUICK_S


IMAGE_CODES = sorted(
    cls.code
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, ImageError)
)
PARAMS = {
    "unsupported_format": {"format": "QOI"},
    "image_too_large": {"width": 1, "height": 2, "megapixels": 3, "limit_megapixels": 4},
    "file_too_large": {"megabytes": 25, "limit_megabytes": 20},
    "image_too_small": {"width": 500, "height": 8, "min_side": 16},
}


@pytest.mark.parametrize("lang", ["en", "ru"])
@pytest.mark.parametrize("code", IMAGE_CODES)
def test_every_image_code_has_a_text_its_params_fill(lang: str, code: str) -> None:
    from bot.media import refusal

    error = ImageError("x", **PARAMS.get(code, {}))  # type: ignore[arg-type]
    error.code = code
    text = refusal(lang, error)
    assert BUNDLES[lang].has_message(code) and "{" not in text
    for value in PARAMS.get(code, {}).values():
        assert str(value) in text
