"""engine.tiling: tiles that partition the picture, and a tiled objective whose values and
gradient are the untiled ones (exactly with a receptive-field margin, closely at the default).

Random VGG16 weights from a file, thin pictures (few tiles, cheap forwards) on the CPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from engine import tiles, tiling
from engine.context import Context
from engine.losses import GatysLoss, LossWeights, style_statistics
from engine.model import build_features
from engine.options import StylizeOptions
from engine.start import resize, start_image, to_tensor
from engine.tiles import ALIGN, plan_tiles
from engine.tiling import TiledLoss, stride
from tests.engine.tolerance import EPS32, reordered

# VGG16's relu5_1 sees ±66 px (its receptive field is 132 px), so an 80 px margin makes every
# core's features those of the whole picture: the tiled gradient is then exact.
EXACT_MARGIN = 80
# Exact in real arithmetic, not in fp32, which engine.tiling and engine.losses compute in
# whatever their input: the tiled statistics add a layer's positions tile by tile (in fp64),
# the untiled ones all at once (in fp32), each kernel path in its own order, so the two agree to
# the rounding of those sums (tests/engine/tolerance.py), 48 × 560 = 26,880 of them at relu1_1:
# 7.8e-5. Measured on the default, AVX2 and AVX-512 paths, 5 pictures each: the gradient
# 2.9e-7 to 4.7e-7 apart (Gram) and 7e-6 to 2.2e-5 (Wasserstein; 1.09e-5 on AVX2 failed the old
# bound of 1e-5), the values at most 1e-6. A 48 px margin, short of exact, puts the gradient
# 4.8e-3 (Gram) and 3.5e-2 (Wasserstein) off, 60 and 450 times this bound.
TILED_ROUNDING = reordered(48 * 560)
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
    assert torch.allclose(tv, values, rtol=TILED_ROUNDING, atol=0)
    assert _relative(tg, grad) < TILED_ROUNDING
    parts = tiled.measure(ctx, x)
    with torch.no_grad():
        expected = loss.parts(x, ctx.features(x, loss.layers))
    for name in ("content", "style", "tv", "total"):
        assert torch.allclose(parts[name], expected[name], rtol=TILED_ROUNDING, atol=0), name


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
        # a window's conv adds the same 3 × 3 × ≤ 512 terms per output as the whole picture's
        # (bitwise the same on the default, AVX2 and AVX-512 paths here)
        assert _relative(pieces[name], whole[name]) < reordered(9 * 512), name
    for kind in ("gram", "wasserstein"):
        targets = tiling.tiled_statistics(ctx, image, layers, kind, "fp32", 320, EXACT_MARGIN)
        for name in layers:
            positions = image[0, 0].numel() // stride(name) ** 2  # what each statistic sums
            expected = style_statistics(whole[name], kind)
            for key, value in expected.items():
                if key != "cov_sqrt":  # measured 0.01-0.63 × √n·eps apart
                    assert _relative(targets[name][key], value) < reordered(positions), key
            if kind == "wasserstein":
                _assert_root_follows_covariance(targets[name], expected, name)


def _assert_root_follows_covariance(
    tiled: dict[str, torch.Tensor], whole: dict[str, torch.Tensor], name: str
) -> None:
    """cov_sqrt is √cov of the ridged covariance (eigh in fp64, eigenvalues clamped at 0, kept
    in fp32), so two roots are as close as their covariances allow, which the check above
    bounds: for PSD A, B, ‖√A − √B‖ ≤ ‖A − B‖^½, and ≤ ‖A − B‖ / (2√a) when both are above
    a·I > 0 (Bhatia, Matrix Analysis, X.1 and X.3; the clamp only brings them closer). Plus
    eigh's backward error (C·ε₆₄·‖A‖ each, through the same ^½) and the fp32 rounding of each
    root (u·‖√A‖). At relu5_1 (120 positions, 512 channels) the ridge is smaller than the
    covariance's rounding and eigenvalues come out below 0, where √ is steepest: the roots are
    2.1e-4 apart (relative, spectral norm) on the default, AVX2 and AVX-512 paths, the bound
    9e-4; at the other layers 8.7e-7 to 7.1e-6 against 6e-6 to 2.1e-3. (It was a fixed 1e-3 on
    the Frobenius norm, where relu5_1's roots came to 8.3e-4.)"""
    covs = [m["cov"].double() for m in (tiled, whole)]
    roots = [m["cov_sqrt"].double() for m in (tiled, whole)]
    apart = float((covs[0] - covs[1]).norm())
    floor = min(float(torch.linalg.eigvalsh(c).min()) for c in covs)
    steepest = apart / (2 * math.sqrt(floor)) if floor > 0 else math.inf
    channels, eps64 = covs[0].shape[-1], torch.finfo(torch.float64).eps
    eigh = sum(math.sqrt(channels * eps64 * float(c.norm())) for c in covs)
    rounding = EPS32 / 2 * sum(float(r.norm()) for r in roots)
    bound = min(steepest, math.sqrt(apart)) + eigh + rounding
    assert float(torch.linalg.matrix_norm(roots[0] - roots[1], ord=2).max()) <= bound, name


def test_progress_hears_every_tile_pass(ctx: Context) -> None:
    loss = _objective(ctx, "gram", 48, 560)
    heard: list[tuple[int, int]] = []
    tiled = TiledLoss(loss, 320, EXACT_MARGIN, on_tile=lambda d, n: heard.append((d, n)))
    tiled.value_and_grad(ctx, torch.rand(2, 3, 48, 560))
    assert heard == [(d, 6) for d in range(1, 7)]  # pass 1 and pass 2 over three tiles
