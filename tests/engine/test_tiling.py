"""engine.tiling: tiles that partition the picture, and a tiled objective whose values and
gradient are the untiled ones (exactly with a receptive-field margin, closely at the default).

Random VGG16 weights from a file, thin pictures (few tiles, cheap forwards) on the CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from engine import tiles, tiling
from engine.losses import GatysLoss, LossWeights, style_statistics
from engine.model import build_features
from engine.objective import Context
from engine.options import StylizeOptions
from engine.start import resize, start_image, to_tensor
from engine.tiles import ALIGN, plan_tiles
from engine.tiling import TiledLoss

# VGG16's relu5_1 sees ±66 px (its receptive field is 132 px), so an 80 px margin makes every
# core's features those of the whole picture: the tiled gradient is then exact.
EXACT_MARGIN = 80
DEV = torch.device("cpu")


@pytest.mark.parametrize(
    ("height", "width", "tile", "margin"),
    [(64, 64, 128, 32), (341, 512, 256, 32), (683, 1024, 256, 16), (100, 1000, 200, 48)],
)
def test_cores_partition_the_picture_on_the_pooling_grid(
    height: int, width: int, tile: int, margin: int
) -> None:
    tiles = plan_tiles(height, width, tile, margin)
    covered = torch.zeros(height, width, dtype=torch.int32)
    for t in tiles:
        top, bottom, left, right = t.core
        covered[top:bottom, left:right] += 1
        wtop, wbottom, wleft, wright = t.window
        assert wbottom - wtop <= tile and wright - wleft <= tile
        assert wtop % ALIGN == 0 and wleft % ALIGN == 0  # the same pooling cells as the picture
        assert top % ALIGN == 0 and left % ALIGN == 0
        # the margin is there unless the picture ends first
        assert wtop == max(0, top - margin) and wleft == max(0, left - margin)
        assert wbottom == min(height, bottom + margin) and wright == min(width, right + margin)
    assert torch.equal(covered, torch.ones_like(covered))  # every pixel in exactly one core


def test_a_picture_within_one_tile_is_one_tile() -> None:
    (only,) = plan_tiles(200, 300, 320, 32)
    assert only.core == only.window == (0, 200, 0, 300)
    assert tiles.fits(200, 300, 320) and not tiles.fits(200, 330, 320)
    assert tiles.fits(5000, 5000, None)


def test_tiles_shrink_before_the_picture() -> None:
    assert tiles.shrink_tile(1024, None) == 768  # an untiled scale starts tiling
    assert tiles.shrink_tile(1024, 512) == 384
    assert tiles.shrink_tile(1024, 160) is None  # 120 px tiles are mostly margin
    assert tiles.shrink_tile(300, 2048) == 224  # the tile never exceeds the picture


def test_a_tiled_scale_keeps_its_lbfgs_history_within_the_tile() -> None:
    # 256 px windows in bf16 (128 MB) hold 7 pairs of 1024×683 fp32 pictures: the floor, 10
    assert tiling.history_within(256, 683, 1024, "vgg16", "bf16", 50) == tiling.MIN_HISTORY
    assert tiling.history_within(1024, 1365, 2048, "vgg16", "bf16", 50) == 30  # 2 GB / 67 MB
    assert tiling.history_within(1024, 1365, 2048, "vgg16", "bf16", 20) == 20
    assert tiling.history_within(256, 683, 1024, "vgg16", "bf16", 5) == 5  # a smaller ask stands


@pytest.fixture(scope="module")
def ctx(random_weights_vgg16: Path) -> Context:
    net = build_features("vgg16", str(random_weights_vgg16))
    return Context(net, torch.device("cpu"), "fp32")


def _objective(ctx: Context, kind: str, height: int, width: int) -> GatysLoss:
    """Two rows with different photos, paintings and weights."""
    g = torch.Generator().manual_seed(5)
    rows = [
        LossWeights.from_options(StylizeOptions(style_loss=kind, strength=s))  # type: ignore[arg-type]
        for s in (0.3, 0.9)
    ]
    w = rows[0]
    contents = torch.rand(2, 3, height, width, generator=g)
    styles = torch.rand(2, 3, 64, 80, generator=g)
    with torch.no_grad():
        feats = ctx.features(contents, w.content_layers)
        per_row = [
            {n: style_statistics(f, kind) for n, f in ctx.features(s, w.style_layers).items()}
            for s in styles.split(1)
        ]
    targets = {
        n: {k: torch.cat([t[n][k] for t in per_row]) for k in per_row[0][n]} for n in per_row[0]
    }
    return GatysLoss(ctx.net, rows, feats, targets)


def _untiled(ctx: Context, loss: GatysLoss, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.clone().requires_grad_(True)
    values = loss.parts(x, ctx.features(x, loss.layers))["total"]
    (grad,) = torch.autograd.grad(values.sum(), x)
    return values.detach(), grad


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("kind", ["gram", "wasserstein"])
def test_tiled_values_and_gradient_are_the_untiled_ones(ctx: Context, kind: str) -> None:
    loss = _objective(ctx, kind, 48, 560)  # three tiles of ≤ 320 px, the middle with 2 margins
    x = torch.rand(2, 3, 48, 560, generator=torch.Generator().manual_seed(1))
    values, grad = _untiled(ctx, loss, x)
    tiled = TiledLoss(loss, 320, EXACT_MARGIN)
    assert len(tiling.tiles_of(x, 320, EXACT_MARGIN)) == 3
    tv, tg = tiled.value_and_grad(ctx, x)
    assert torch.allclose(tv, values, rtol=1e-5)
    assert _relative(tg, grad) < 1e-5
    parts = tiled.measure(ctx, x)
    with torch.no_grad():
        expected = loss.parts(x, ctx.features(x, loss.layers))
    for name in ("content", "style", "tv", "total"):
        assert torch.allclose(parts[name], expected[name], rtol=1e-5), name


@pytest.fixture(scope="module")
def trained(trained_vgg16: Path) -> Context:
    """The trained VGG16 fixture: margins are set for trained features (engine.tiles)."""
    return Context(build_features("vgg16", str(trained_vgg16)), torch.device("cpu"), "fp32")


def _photo_objective(ctx: Context, test_data: Path, side: int) -> tuple[GatysLoss, torch.Tensor]:
    """The cat and The Starry Night at `side` px; the point: the photo in the painting's hues."""
    photo = to_tensor(resize(Image.open(test_data / "photos" / "chelsea-the-cat.png"), side), DEV)
    art = Image.open(test_data / "artworks" / "van-gogh-starry-night.jpg").convert("RGB")
    w = LossWeights.from_options(StylizeOptions())
    with torch.no_grad():
        feats = ctx.features(photo, w.content_layers)
        targets = {
            n: style_statistics(f, "gram")
            for n, f in ctx.features(to_tensor(resize(art, side), DEV), w.style_layers).items()
        }
    start = start_image(
        photo, init="palette", preserve_colors="off", palette=art, generator=torch.Generator()
    )
    return GatysLoss(ctx.net, w, feats, targets), start


def test_seams_do_not_show_in_the_gradient_at_the_default_margin(
    trained: Context, test_data: Path
) -> None:
    """Per-column and per-row mean gradient magnitude, tiled (VGG16's 16 px margin) against
    untiled: no column or row, least of all a core border, is more than a few percent off."""
    loss, x = _photo_objective(trained, test_data, 320)  # 320×213 in 128 px tiles
    assert tiles.margin_for("vgg16") == 16
    values, grad = _untiled(trained, loss, x)
    tv, tg = TiledLoss(loss, 128).value_and_grad(trained, x)
    assert len(tiling.tiles_of(x, 128, 16)) == 6  # 3 × 2
    assert torch.allclose(tv, values, rtol=1e-3)
    assert _relative(tg, grad) < 0.02
    for dims in ((0, 1, 2), (0, 1, 3)):  # columns, rows
        ratio = tg.abs().mean(dims) / grad.abs().mean(dims)
        assert float((ratio - 1).abs().max()) < 0.05


def test_tiled_feature_passes_match_the_whole_picture(ctx: Context) -> None:
    image = torch.rand(1, 3, 64, 480, generator=torch.Generator().manual_seed(6))
    layers = ("relu1_1", "relu3_1", "relu4_2", "relu5_1")
    with torch.no_grad():
        whole = ctx.features(image, layers)
    pieces = tiling.tiled_features(ctx, image, layers, "fp32", 320, EXACT_MARGIN)
    for name in layers:
        assert pieces[name].shape == whole[name].shape
        assert torch.allclose(pieces[name], whole[name], atol=1e-5), name
    for kind in ("gram", "wasserstein"):
        targets = tiling.tiled_statistics(ctx, image, layers, kind, "fp32", 320, EXACT_MARGIN)
        for name in layers:
            expected = style_statistics(whole[name], kind)
            for key, value in expected.items():
                if key == "cov_sqrt":  # near-zero eigenvalues (dead channels) amplify 1e-7
                    assert _relative(targets[name][key], value) < 1e-3, key
                else:
                    assert torch.allclose(targets[name][key], value, rtol=1e-4, atol=1e-6), key


def test_progress_hears_every_tile_pass(ctx: Context) -> None:
    loss = _objective(ctx, "gram", 48, 560)
    heard: list[tuple[int, int]] = []
    tiled = TiledLoss(loss, 320, EXACT_MARGIN, on_tile=lambda d, n: heard.append((d, n)))
    tiled.value_and_grad(ctx, torch.rand(2, 3, 48, 560))
    assert heard == [(d, 6) for d in range(1, 7)]  # pass 1 and pass 2 over three tiles
