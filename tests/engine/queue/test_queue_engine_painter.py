"""The engine painter's batching seam, without painting: a job's bucket comes from the photo's
header alone, and agrees with what the decoder will make of the photo; the options of a job,
whose unknown preset names fail it."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.imaging import load_image
from engine.presets import UnknownPreset
from engine.queue import BatchPainter, JobOptions, JobRequest
from engine.queue.engine_painter import EnginePainter, content_size, job_options
from tests.engine.imaging.samples import encode, gradient, jpeg_exif


def photo(orientation: int, size: tuple[int, int] = (48, 32)) -> bytes:
    return encode(gradient(size), "JPEG", exif=jpeg_exif(orientation))


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_content_size_is_the_upright_size_the_decoder_gives(orientation: int) -> None:
    data = photo(orientation)
    assert content_size(data) == load_image(data).size
    assert content_size(data) == ((32, 48) if orientation in (6, 8) else (48, 32))


def test_buckets_group_by_shape_and_options(tmp_path: Path) -> None:
    painter = EnginePainter(
        "vgg19", "random", "cpu", 512, gallery=tmp_path, style_cache_dir=None, batch=2
    )
    assert isinstance(painter, BatchPainter)

    def bucket(data: bytes, **options: object) -> object:
        return painter.bucket(JobRequest(1, 1, data, [], JobOptions(**options)))  # type: ignore[arg-type]

    wide, same_aspect = photo(1, (48, 32)), photo(1, (96, 64))
    assert bucket(wide) == bucket(same_aspect)  # one output shape at the same size
    assert bucket(wide) == bucket(wide, strength="strong", preserve_colors=True)  # per job
    assert bucket(wide) != bucket(photo(6))  # upright it is tall: another shape
    assert bucket(wide, size=256) != bucket(wide, size=384)
    # a quality's step budget and tolerance are per job; at one size its scales are the same
    assert bucket(wide, quality="fast") == bucket(wide, quality="high")


@pytest.mark.parametrize(
    ("options", "message"),
    [({"quality": "ultra"}, "unknown quality 'ultra'"), ({"strength": "x"}, "unknown strength")],
)
def test_an_unknown_preset_name_fails_the_job_instead_of_painting_another(
    options: dict[str, str], message: str
) -> None:
    request = JobRequest(1, 1, b"photo", [], JobOptions(**options))  # type: ignore[arg-type]
    with pytest.raises(UnknownPreset, match=message):
        job_options(request, model="vgg19", weights="random", device="cpu", max_size=512)


def test_prints_are_painted_alone_at_the_print_size(tmp_path: Path) -> None:
    painter = EnginePainter(
        "vgg19", "random", "cpu", 512, gallery=tmp_path, style_cache_dir=None, batch=2,
        print_size=2048,
    )  # fmt: skip
    wide = photo(1)
    printed = JobRequest(1, 1, wide, [], JobOptions(size=4096, quality="print"))
    assert painter.bucket(printed) is None  # no batch-mates
    assert painter.options(printed).size == 2048  # capped by the print size, not ORSAY_MAX_SIZE
    ordinary = JobRequest(1, 1, wide, [], JobOptions(size=4096, quality="high"))
    assert painter.options(ordinary).size == 512
    off = EnginePainter(
        "vgg19", "random", "cpu", 512, gallery=tmp_path, style_cache_dir=None, batch=2
    )
    # a worker where prints are off paints one at its own cap
    assert (off.options(printed).size, off.options(printed).quality) == (512, "print")
