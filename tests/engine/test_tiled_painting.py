"""`stylize` with pictures bigger than their tile: painted in tiles, heard tile by tile, and an
out-of-memory error shrinks the tiles before the picture."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from PIL import Image

from engine import report, tiles, tiling
from engine.options import ProgressEvent, StyleInput, StylizeOptions
from engine.start import to_tensor
from engine.style_transfer import stylize


@pytest.fixture
def tiled_options(tiny_options: StylizeOptions) -> StylizeOptions:
    """128 px (128×85) in 64 px tiles: the 64 px scale fits one tile, the 128 px one takes six."""
    tiny_options.size, tiny_options.scales, tiny_options.steps = 128, (64, 128), 4
    tiny_options.tile = 64
    return tiny_options


def test_a_picture_bigger_than_its_tile_is_painted_in_tiles(
    photo: Image.Image,
    painting: Image.Image,
    tiled_options: StylizeOptions,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(report, "TILE_EVENTS_EVERY", 0.0)  # hear every tile pass
    events: list[ProgressEvent] = []
    result = stylize(photo, [StyleInput(painting)], tiled_options, progress=events.append)
    assert result.image.size == (128, 85)
    assert result.report["tile"] == 64
    assert [s["tiles"] for s in result.report["scales"]] == [1, 6]
    heard = {e.tile_count for e in events if e.tile_count}
    assert heard and heard <= {6, 12}  # one pass per tile, two in an exact evaluation
    assert all(e.scale_index == 2 for e in events if e.tile_count)
    fractions = [e.fraction for e in events if e.stage == "optimizing"]
    assert fractions == sorted(fractions)  # tiles move the bar forward, never back
    losses = result.report["final_losses"]
    assert all(v == v and v >= 0 for v in losses.values())  # measured in tiles, finite


def test_without_a_tile_nothing_is_tiled(
    photo: Image.Image, painting: Image.Image, tiled_options: StylizeOptions
) -> None:
    tiled_options.tile = 0
    result = stylize(photo, [StyleInput(painting)], tiled_options)
    assert result.report["tile"] is None
    assert [s["tiles"] for s in result.report["scales"]] == [1, 1]


@pytest.mark.parametrize(("tile", "smaller"), [(64, 48), (0, 96)])
def test_out_of_memory_shrinks_the_tiles_before_the_picture(
    photo: Image.Image,
    painting: Image.Image,
    tiled_options: StylizeOptions,
    monkeypatch: pytest.MonkeyPatch,
    test_device: str,
    tile: int,
    smaller: int,
) -> None:
    """A tiled scale retries in smaller tiles; an untiled one (tile 0 never tiles, but an
    out-of-memory error overrides that) starts tiling at three quarters of its side."""
    monkeypatch.setattr(tiles, "MIN_TILE", 32)
    tiled_options.tile = tile
    failed: list[int] = []
    original_tiled = tiling.TiledLoss.value_and_grad

    def out_of_memory(width: int) -> None:
        if not failed:
            failed.append(width)
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    def flaky_tiled(self, ctx, x):  # type: ignore[no-untyped-def]
        out_of_memory(x.shape[-1])
        return original_tiled(self, ctx, x)

    monkeypatch.setattr(tiling.TiledLoss, "value_and_grad", flaky_tiled)
    if tile == 0:
        from engine import optimize

        original_optimize = optimize.optimize

        def flaky_optimize(ctx, objective, start, *args, **kwargs):  # type: ignore[no-untyped-def]
            if start.shape[-1] == 128:
                out_of_memory(128)
            return original_optimize(ctx, objective, start, *args, **kwargs)

        monkeypatch.setattr("engine.style_transfer.optimize", flaky_optimize)
    events: list[ProgressEvent] = []
    result = stylize(photo, [StyleInput(painting)], tiled_options, progress=events.append)
    assert failed == [128]
    messages = [e.message for e in events if e.message]
    assert messages == [f"{test_device.upper()} out of memory: retrying in {smaller} px tiles"]
    assert result.report["oom_fallbacks"] == [{"tile_from": tile or 128, "tile_to": smaller}]
    assert result.image.size == (128, 85)  # the print keeps its size
    assert result.report["tile"] == smaller
    assert result.report["scales"][-1]["tiles"] > 1


def _edges(picture: Image.Image, axis: int) -> torch.Tensor:
    """Mean |difference| between neighbouring columns (axis -1) or rows (axis -2)."""
    x = to_tensor(picture, torch.device("cpu"))
    return x.diff(dim=axis).abs().mean((0, 1, 2) if axis == -1 else (0, 1, 3))


@pytest.mark.slow
@pytest.mark.timeout(900)  # two 256 px paintings in fp32: a minute or so on 2 idle cores
def test_no_seam_shows_in_a_painting_made_in_tiles(test_data: Path, trained_vgg16: Path) -> None:
    """The trained VGG16 fixture paints the cat at 256 px in 128 px tiles and in one piece.
    Where two cores meet, a seam would be a jump between neighbouring pixels: the tiled
    picture's mean jump across each core border, over the untiled picture's across the same
    line, must be no larger than jumps the two pictures differ by anywhere (they are two
    runs of a chaotic optimizer: their per-column means differ by a few percent throughout)."""
    options = StylizeOptions(
        size=256, scales=(256,), steps=20, model="vgg16", precision="fp32", seed=0,
        weights=str(trained_vgg16), style_cache=False,
    )  # fmt: skip
    photo = Image.open(test_data / "photos" / "chelsea-the-cat.png")
    style = [StyleInput(Image.open(test_data / "artworks" / "van-gogh-starry-night.jpg"))]
    whole = stylize(photo, style, dataclasses.replace(options, tile=0)).image
    tiled = stylize(photo, style, dataclasses.replace(options, tile=128))
    assert tiled.report["scales"][-1]["tiles"] == 6
    height, width = whole.height, whole.width
    cut = tiles.plan_tiles(height, width, 128, tiles.margin_for("vgg16"))
    for axis, borders in ((-1, {t.core[2] for t in cut}), (-2, {t.core[0] for t in cut})):
        ratio = (_edges(tiled.image, axis) / _edges(whole, axis)).log()
        at_borders = ratio[[b - 1 for b in sorted(borders - {0})]]
        assert float(at_borders.max()) <= max(0.1, float(ratio.quantile(0.95))), ratio
