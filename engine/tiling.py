"""Pictures bigger than one tile: the Gatys objective and its gradient computed tile by tile.

The picture is cut into cores that partition it on VGG's 16 px pooling grid, each seen through
a window with a margin of context (engine.tiles), so the features at a core's positions are
(almost) those of the whole picture. Everything the loss needs is a sum over positions, so a
sum over cores: the content error, and the style statistics Σf and Σffᵀ of every style layer
(the Gram matrix is Σffᵀ / (C·N)). The style loss compares the global statistics with the
painting's, so its gradient needs them first, and one evaluation takes two passes:

1. no gradient, per tile: add up every style layer's statistics over the cores; then the
   picture's style loss and its gradient dL/dS with respect to those sums (C×C tensors);
2. per tile, with gradient: backpropagate ⟨dL/dS, S_tile⟩ (the loss linearised at the global
   statistics: the same gradient) plus the core's content error, and add the window's input
   gradient into the picture's (margins included: a pixel feeds its neighbours' cores too).

With margins as wide as the receptive field this is the untiled gradient exactly (the tests
check it); engine.tiles.MARGINS trades a measured, invisible error for less overlap. Total
variation needs no network and is computed on the whole picture. Peak memory is one window's
forward and backward plus what is picture-sized anyway (the picture, its gradient, the content
features at relu4_2, the optimizer's history), not the picture's activations.

Not one pass with the last evaluation's statistics: that gradient is not the loss's, and
L-BFGS does not forgive it. Measured (VGG16 fixture, 256 px in 128 px tiles, 40 steps): final
loss 0.00269 with both passes, 0.00275 untiled, 0.00730 lagged, with 69 evaluations to 42.

`TiledLoss.value_and_grad(ctx, x)` is the optimizer's seam, as for `GatysLoss`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from engine import device as devices
from engine.context import Context
from engine.losses import (
    GatysLoss,
    Targets,
    gram,
    moment_targets,
    statistic_losses,
    total_variations,
)
from engine.tiles import MIN_TILE, Tile, aligned, margin_for, plan_tiles

# Peak bytes per window pixel of one tiled evaluation (the window's forward and backward), by
# (model, precision): the peak RSS it added on a CPU, the same at 256, 384 and 512 px windows
# (torch 2.14). CUDA's caching allocator and cuDNN's workspaces may need more; unmeasured there,
# and an out-of-memory error shrinks the tiles anyway.
WINDOW_BYTES = {
    ("vgg19", "fp32"): 3450,
    ("vgg19", "bf16"): 1960,
    ("vgg16", "fp32"): 3020,
    ("vgg16", "bf16"): 1960,
}
MEMORY_SHARE = 0.4  # of the device's free memory one window may take; the rest is picture-sized
DEFAULT_TILE = 1024  # where the device does not say how much memory it has
# Fewest L-BFGS pairs a tiled scale keeps: 10 ended 7% above 50 (engine.schedule.PRINT_HISTORY).
MIN_HISTORY = 10


def pick_tile(
    requested: int | None, device: torch.device, model: str, precision: str
) -> int | None:
    """The run's largest tile side, or None for never tiling (`requested` 0). None requested:
    the side whose window takes MEMORY_SHARE of the device's free memory at WINDOW_BYTES per
    pixel (DEFAULT_TILE where the device does not say): 2016 px with 20 GB free on a CPU in
    bf16, 5300 px on an idle 139 GB H200."""
    if requested is not None:
        return aligned(requested) if requested > 0 else None
    free = devices.free_memory(device)
    if free is None:
        return DEFAULT_TILE
    per_px = WINDOW_BYTES.get((model, precision), max(WINDOW_BYTES.values()))
    return max(MIN_TILE, aligned(int(math.sqrt(free * MEMORY_SHARE / per_px))))


def history_within(
    tile: int, height: int, width: int, model: str, precision: str, wanted: int
) -> int:
    """L-BFGS pairs for a tiled scale: as many of `wanted` as fit in one window's budget (the
    optimizer keeps two fp32 copies of the picture per pair), at least MIN_HISTORY. A small tile
    is a small memory budget, and the history is picture-sized: at 1024 px in 256 px tiles 50
    pairs were 840 MB, six windows' worth, and most of the tiled run's peak."""
    budget = tile * tile * WINDOW_BYTES.get((model, precision), max(WINDOW_BYTES.values()))
    fit = budget // (2 * 3 * 4 * height * width)
    return min(wanted, max(MIN_HISTORY, fit))


def stride(layer: str) -> int:
    """Pixels per feature position of a VGG layer `reluB_I`: 2^(B-1) (the poolings before it)."""
    return 2 ** (int(layer[4 : layer.index("_")]) - 1)


def tiles_of(x: torch.Tensor, tile: int, margin: int) -> list[Tile]:
    return plan_tiles(x.shape[-2], x.shape[-1], tile, margin)


def _window(x: torch.Tensor, tile: Tile) -> torch.Tensor:
    top, bottom, left, right = tile.window
    return x[..., top:bottom, left:right]


def _core(feature: torch.Tensor, tile: Tile, step: int, height: int, width: int) -> torch.Tensor:
    """The feature positions of the tile's core, cut from its window's feature map."""
    top, bottom, left, right = tile.core
    wtop, wleft = tile.window[0], tile.window[2]
    y0, x0 = (top - wtop) // step, (left - wleft) // step
    y1 = (bottom - wtop) // step if bottom < height else feature.shape[-2]
    x1 = (right - wleft) // step if right < width else feature.shape[-1]
    if not feature.requires_grad:
        return feature[..., y0:y1, x0:x1]
    return _Crop.apply(feature, (y0, y1, x0, x1))


class _Crop(torch.autograd.Function):
    """`feature[..., y0:y1, x0:x1]` whose gradient keeps the feature's memory format. Autograd's
    slice backward pads the gradient into a contiguous-format tensor, and adding that to the
    channels-last gradient of the layer above, then ReLU's backward on the mix, ran on slow
    strided paths: a fifth of a bf16 tiled evaluation at 192 px tiles (add_ 17×, ReLU backward
    3.4× their untiled times)."""

    @staticmethod
    def forward(ctx: Any, feature: torch.Tensor, box: tuple[int, int, int, int]) -> torch.Tensor:
        ctx.box, ctx.like = box, feature.detach()
        y0, y1, x0, x1 = box
        return feature[..., y0:y1, x0:x1]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        y0, y1, x0, x1 = ctx.box
        padded = torch.zeros_like(ctx.like, dtype=grad.dtype)  # keeps channels-last
        padded[..., y0:y1, x0:x1] = grad
        return padded, None


def _passes(
    ctx: Context, x: torch.Tensor, tiles: Sequence[Tile], layers: Sequence[str], precision: str
) -> Iterator[tuple[Tile, dict[str, torch.Tensor]]]:
    """Each tile and its window's features at `layers`, without gradient."""
    with torch.no_grad():
        for t in tiles:
            yield t, ctx.features(_window(x, t), layers, precision)


@dataclass
class _Sums:
    """Σf (B, C) and Σffᵀ (B, C, C) of one layer over the positions seen so far, in fp64 (the
    covariance Σffᵀ/N − μμᵀ cancels digits), and their count N."""

    s1: torch.Tensor | None = None
    s2: torch.Tensor | None = None
    count: int = 0

    def add(self, core: torch.Tensor, first_moment: bool) -> None:
        _, c, h, w = core.shape
        s2 = gram(core).double() * (c * h * w)
        self.s2 = s2 if self.s2 is None else self.s2 + s2
        if first_moment:
            s1 = core.float().sum((2, 3)).double()
            self.s1 = s1 if self.s1 is None else self.s1 + s1
        self.count += h * w

    def statistics(self, kind: str) -> dict[str, torch.Tensor]:
        """What engine.losses computes from whole features: {"gram"} or {"mean", "cov"}."""
        assert self.s2 is not None
        n, c = self.count, self.s2.shape[-1]
        if kind == "gram":
            return {"gram": (self.s2 / (c * n)).float()}
        assert self.s1 is not None
        mean = self.s1 / n
        cov = self.s2 / n - mean.unsqueeze(2) * mean.unsqueeze(1)
        return {"mean": mean.float(), "cov": cov.float()}


def _style_sums(
    ctx: Context,
    x: torch.Tensor,
    tiles: Sequence[Tile],
    layers: Sequence[str],
    kind: str,
    precision: str,
    on_tile: Callable[[], object] = lambda: None,
) -> dict[str, _Sums]:
    """Every style layer's sums over the picture (pass 1)."""
    height, width = x.shape[-2:]
    sums = {name: _Sums() for name in layers}
    for t, feats in _passes(ctx, x, tiles, layers, precision):
        for name, f in feats.items():
            sums[name].add(_core(f, t, stride(name), height, width), kind != "gram")
        on_tile()
    return sums


def tiled_features(
    ctx: Context,
    image: torch.Tensor,
    layers: Sequence[str],
    precision: str,
    tile: int,
    margin: int | None = None,
) -> dict[str, torch.Tensor]:
    """`ctx.features(image, layers)` without gradient for a picture too big for one pass, each
    layer's map put together from the tiles' cores: for the content features (relu4_2 is 512
    channels at 1/8 of the side, 2.7× the picture's own bytes in fp32)."""
    height, width = image.shape[-2:]
    margin = margin_for(ctx.net.model_name) if margin is None else margin
    out: dict[str, torch.Tensor] = {}
    for t, feats in _passes(ctx, image, tiles_of(image, tile, margin), layers, precision):
        for name, f in feats.items():
            step = stride(name)
            if name not in out:
                shape = (f.shape[0], f.shape[1], height // step, width // step)
                out[name] = torch.empty(shape, dtype=f.dtype, device=f.device)
            y0, x0 = t.core[0] // step, t.core[2] // step
            core = _core(f, t, step, height, width)
            out[name][..., y0 : y0 + core.shape[-2], x0 : x0 + core.shape[-1]] = core
    return out


def tiled_statistics(
    ctx: Context,
    image: torch.Tensor,
    layers: Sequence[str],
    kind: str,
    precision: str,
    tile: int,
    margin: int | None = None,
) -> Targets:
    """A painting's style targets (engine.losses.style_statistics of each layer) at a size too
    big for one pass: its statistics summed over tiles."""
    margin = margin_for(ctx.net.model_name) if margin is None else margin
    tiles = tiles_of(image, tile, margin)
    sums = _style_sums(ctx, image, tiles, layers, kind, precision)
    targets: Targets = {}
    for name in layers:
        stats = sums[name].statistics(kind)
        targets[name] = stats if kind == "gram" else moment_targets(stats["mean"], stats["cov"])
    return targets


class TiledLoss:
    """A `GatysLoss` evaluated in tiles of at most `tile` px a side: the same rows, weights and
    values. `value_and_grad(ctx, x)` is the optimizer's evaluation (two passes, see the module
    docstring); `measure(ctx, x)` the report's content, style, tv and total parts."""

    def __init__(
        self,
        loss: GatysLoss,
        tile: int,
        margin: int | None = None,
        on_tile: Callable[[int, int], object] | None = None,
    ) -> None:
        self.loss, self.tile = loss, tile
        self.margin = margin_for(loss.net.model_name) if margin is None else margin
        self.on_tile = on_tile  # (tile passes done, passes this evaluation): progress events
        self.layers = loss.layers

    def select(self, rows: Sequence[int] | torch.Tensor) -> TiledLoss:
        return TiledLoss(self.loss.select(rows), self.tile, self.margin, self.on_tile)

    def _style(
        self, sums: Mapping[str, _Sums], grad: bool
    ) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]:
        """Each row's style loss, and with `grad` d(Σ style weight · style)/d(sums) per layer."""
        w, kind = self.loss.w, self.loss.w.kind
        leaves: dict[str, dict[str, torch.Tensor]] = {}
        total = torch.zeros(self.loss.factors.shape[0], device=self.loss.factors.device)
        with torch.enable_grad():
            for name, lw in zip(w.style_layers, w.layer_weights, strict=True):
                s = sums[name]
                assert s.s2 is not None
                s2 = s.s2.detach().requires_grad_(grad)
                s1 = s.s1.detach().requires_grad_(grad) if s.s1 is not None else None
                leaves[name] = {"s2": s2} | ({"s1": s1} if s1 is not None else {})
                stats = _Sums(s1, s2, s.count).statistics(kind)
                total = total + lw * statistic_losses(stats, self.loss.style[name], kind)
            if not grad:
                return total.detach(), {}
            weighted = (self.loss.factors[:, 1].double() * total).sum()
            flat = [v for d in leaves.values() for v in d.values()]
            grads = iter(torch.autograd.grad(weighted, flat))
        dsums = {name: {k: next(grads).float() for k in d} for name, d in leaves.items()}
        return total.detach(), dsums

    def _content_error(
        self, feats: Mapping[str, torch.Tensor], t: Tile, height: int, width: int
    ) -> torch.Tensor:
        """Each row's squared content error over the core, over the layer's size, (B,)."""
        total = torch.zeros(self.loss.factors.shape[0], device=self.loss.factors.device)
        for name in self.loss.w.content_layers:
            target = self.loss.content[name]
            step = stride(name)
            core = _core(feats[name], t, step, height, width).float()
            y0, x0 = t.core[0] // step, t.core[2] // step
            ref = target[..., y0 : y0 + core.shape[-2], x0 : x0 + core.shape[-1]]
            total = total + (core - ref).pow(2).flatten(1).sum(1) / target[0].numel()
        return total

    def value_and_grad(self, ctx: Context, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's loss at `x` (B,) and the gradient of their sum (x's shape, fp32)."""
        x = x.detach()
        height, width = x.shape[-2:]
        tiles = tiles_of(x, self.tile, self.margin)
        done, passes = 0, 2 * len(tiles)

        def tick() -> None:
            nonlocal done
            done += 1
            if self.on_tile is not None:
                self.on_tile(done, passes)

        w = self.loss.w
        sums = _style_sums(ctx, x, tiles, w.style_layers, w.kind, ctx.precision, tick)
        style, dsums = self._style(sums, grad=True)
        c_w, s_w, tv_w = self.loss.factors.unbind(1)
        grad = torch.zeros_like(x, dtype=torch.float32)
        content = torch.zeros_like(style)
        for t in tiles:
            window = _window(x, t).requires_grad_(True)
            feats = ctx.features(window, self.layers)
            error = self._content_error(feats, t, height, width)
            surrogate = (c_w * error).sum()
            for name, d in dsums.items():
                core = _core(feats[name], t, stride(name), height, width)
                _, c, h, w_ = core.shape
                surrogate = surrogate + (gram(core) * d["s2"] * (c * h * w_)).sum()
                if "s1" in d:
                    surrogate = surrogate + (core.float().sum((2, 3)) * d["s1"]).sum()
            (g,) = torch.autograd.grad(surrogate, window)
            top, bottom, left, right = t.window
            grad[..., top:bottom, left:right] += g
            content += error.detach()
            del feats, surrogate, g
            tick()
        xt = x.float().requires_grad_(True)
        with torch.enable_grad():
            tv = total_variations(xt)
            (g,) = torch.autograd.grad((tv_w * tv).sum(), xt)
        grad += g
        total = c_w * content + s_w * style + tv_w * tv.detach()
        return total.detach(), grad

    def measure(
        self, ctx: Context, x: torch.Tensor, precision: str | None = None
    ) -> dict[str, torch.Tensor]:
        """`GatysLoss.parts` of `x` without gradient, in tiles: content, style, tv, total."""
        precision = precision or ctx.precision
        x = x.detach()
        height, width = x.shape[-2:]
        w = self.loss.w
        sums = {name: _Sums() for name in w.style_layers}
        content = torch.zeros(x.shape[0], device=x.device)
        for t, feats in _passes(
            ctx, x, tiles_of(x, self.tile, self.margin), self.layers, precision
        ):
            content += self._content_error(feats, t, height, width)
            for name in w.style_layers:
                sums[name].add(_core(feats[name], t, stride(name), height, width), w.kind != "gram")
        style, _ = self._style(sums, grad=False)
        tv = total_variations(x.float())
        c, s, t_w = self.loss.factors.unbind(1)
        total = c * content + s * style + t_w * tv
        return {"content": content, "style": style, "tv": tv, "total": total}


Objective = GatysLoss | TiledLoss  # what engine.optimize minimises


def parts(
    ctx: Context, loss: GatysLoss | TiledLoss, x: torch.Tensor, precision: str
) -> dict[str, torch.Tensor]:
    """The report's loss parts of `x`, in tiles when the objective is tiled."""
    if isinstance(loss, TiledLoss):
        return loss.measure(ctx, x, precision)
    with torch.no_grad():
        return loss.parts(x, ctx.features(x, loss.layers, precision))
