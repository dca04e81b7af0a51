"""The Gatys objective: content MSE + style statistics + total variation.

Style statistics are normalized Gram matrices (default) or per-layer mean and covariance, whose
Wasserstein-2 distance (`style_loss="wasserstein"`) also matches first moments and is less prone
to washed-out colors. Features come out of the network in whatever precision autocast chose;
every statistic and loss here is computed in fp32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from engine.context import Context
from engine.model import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, VGGFeatures
from engine.options import StylizeOptions

# Per layer, a small dict of tensors: {"gram"} or {"mean", "cov", "cov_sqrt"}.
Targets = dict[str, dict[str, torch.Tensor]]

# strength -> style weight: log-linear, 10**(STYLE_LOG10_LO + span * strength), content weight 1.
# Looked at with the trained VGG16 fixture (cat + Starry Night, 256 px): strength 0 -> 1e3
# (photo with a painted tint), 0.25 ("gentle") -> 1e4 (strokes over a clear photo), 0.5
# ("medium") -> 1e5 (strokes and palette, face still plain), 0.85 ("strong") -> 2.5e6 (the
# painting's texture everywhere, the photo a faint layout), 1 -> 1e7.
STYLE_LOG10_LO, STYLE_LOG10_HI = 3.0, 7.0
# Wasserstein terms are per-channel variances rather than normalized Gram entries, so they need
# a much smaller weight: at 1e-4 (VGG16 fixture, 192 px, strength 0.5) content loss ended 10x
# above the Gram run's and the cat was barely visible; 1e-5 is the order of magnitude that
# balances like Gram (looked at once, not tuned further).
WASSERSTEIN_FACTOR = 1e-5
DEFAULT_TV_WEIGHT = 0.1  # mean squared neighbour difference is ~5e-3 on photos


def strength_to_style_weight(strength: float) -> float:
    """The one user knob. Clamped to [0, 1]; see STYLE_LOG10_* for the mapping."""
    s = min(max(float(strength), 0.0), 1.0)
    return 10.0 ** (STYLE_LOG10_LO + (STYLE_LOG10_HI - STYLE_LOG10_LO) * s)


@dataclass(frozen=True)
class LossWeights:
    content: float
    style: float
    tv: float
    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    layer_weights: tuple[float, ...]
    kind: str = "gram"

    @classmethod
    def from_options(cls, options: StylizeOptions) -> LossWeights:
        style_layers = tuple(options.style_layers or DEFAULT_STYLE_LAYERS)
        layer_weights = tuple(options.style_layer_weights or (1.0,) * len(style_layers))
        if len(layer_weights) != len(style_layers):
            raise ValueError("style_layer_weights must have one weight per style layer")
        style = options.style_weight
        if style is None:
            style = strength_to_style_weight(options.strength)
            if options.style_loss == "wasserstein":
                style *= WASSERSTEIN_FACTOR
        return cls(
            content=1.0 if options.content_weight is None else options.content_weight,
            style=style,
            tv=DEFAULT_TV_WEIGHT if options.tv_weight is None else options.tv_weight,
            content_layers=tuple(options.content_layers or DEFAULT_CONTENT_LAYERS),
            style_layers=style_layers,
            layer_weights=layer_weights,
            kind=options.style_loss,
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "content_weight": self.content,
            "style_weight": self.style,
            "tv_weight": self.tv,
            "content_layers": list(self.content_layers),
            "style_layers": list(self.style_layers),
            "style_layer_weights": list(self.layer_weights),
            "style_loss": self.kind,
        }


class _Gram(torch.autograd.Function):
    """G = F Fᵀ / n in fp32, with a one-matmul backward dF = (dG + dGᵀ) F / n done in F's own
    precision. Autograd's backward of `flat @ flat.T` multiplies twice (F is both operands),
    adds the halves and works on an fp32 copy: with the copy the forward made of channels-last
    features, that was a quarter of a 384 px step on CPU. In bf16 runs dF is cast to bf16 for
    the network's backward anyway, so computing it in bf16 loses nothing more."""

    @staticmethod
    def forward(ctx: Any, flat: torch.Tensor, n: int, rows_are_channels: bool) -> torch.Tensor:
        ctx.save_for_backward(flat)
        ctx.n, ctx.rows_are_channels = n, rows_are_channels
        x = flat.float() if flat.dtype in (torch.bfloat16, torch.float16) else flat
        if rows_are_channels:  # flat: (b, c, hw)
            return x @ x.transpose(1, 2) / n
        return x.transpose(1, 2) @ x / n  # flat: (b, hw, c)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (flat,) = ctx.saved_tensors
        sym = ((grad + grad.transpose(1, 2)) / ctx.n).to(flat.dtype)
        if ctx.rows_are_channels:
            return sym @ flat, None, None
        return flat @ sym, None, None


def gram(features: torch.Tensor) -> torch.Tensor:
    """F Fᵀ / (C·H·W) per batch item, in fp32: normalizing by the size keeps targets comparable
    across scales. Channels-last features are read as (H·W, C) without a copy."""
    b, c, h, w = features.shape
    if features.is_contiguous(memory_format=torch.channels_last) and not features.is_contiguous():
        flat = features.permute(0, 2, 3, 1).reshape(b, h * w, c)
        return _Gram.apply(flat, c * h * w, False)
    return _Gram.apply(features.reshape(b, c, h * w), c * h * w, True)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between neighbouring pixels (down + right), over the batch."""
    return total_variations(image).mean()


def total_variations(image: torch.Tensor) -> torch.Tensor:
    """`total_variation` of each batch item, as a (B,) tensor."""
    down = image[:, :, 1:, :] - image[:, :, :-1, :]
    right = image[:, :, :, 1:] - image[:, :, :, :-1]
    return down.pow(2).flatten(1).mean(1) + right.pow(2).flatten(1).mean(1)


def _per_item_mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).flatten(1).mean(1)


def _ridge(matrix: torch.Tensor) -> torch.Tensor:
    """Trained VGGs have dead channels, so feature covariances are singular with repeated zero
    eigenvalues, where eigh fails to converge; a ridge relative to the trace fixes that."""
    n = matrix.shape[-1]
    scale = matrix.diagonal(dim1=-2, dim2=-1).mean(-1).clamp_min(1e-12)
    eye = torch.eye(n, dtype=matrix.dtype, device=matrix.device)
    return matrix + 1e-5 * scale[..., None, None] * eye


def _sqrtm(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix.double())
    root = vectors @ torch.diag_embed(values.clamp_min(0).sqrt()) @ vectors.transpose(-1, -2)
    return root.to(matrix.dtype)


def mean_cov(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    b, c, h, w = features.shape
    flat = features.float().reshape(b, c, h * w)
    mean = flat.mean(dim=2, keepdim=True)
    centered = flat - mean
    return mean.squeeze(2), centered @ centered.transpose(1, 2) / (h * w)


def style_statistics(features: torch.Tensor, kind: str) -> dict[str, torch.Tensor]:
    if kind == "gram":
        return {"gram": gram(features)}
    return moment_targets(*mean_cov(features))


def moment_targets(mean: torch.Tensor, cov: torch.Tensor) -> dict[str, torch.Tensor]:
    """Wasserstein targets from a feature mean and covariance, however they were summed up
    (engine.tiling adds them over the tiles of a picture too big for one pass)."""
    cov = _ridge(cov)
    return {"mean": mean, "cov": cov, "cov_sqrt": _sqrtm(cov)}


def blend_targets(targets: Sequence[Targets], weights: Sequence[float], kind: str) -> Targets:
    """Weighted average of several paintings' statistics (weights normalized to sum 1)."""
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("style weights must sum to a positive number")
    if len(targets) == 1:
        return targets[0]
    out: Targets = {}
    for layer in targets[0]:
        mixed: dict[str, torch.Tensor] = {}
        for key in targets[0][layer]:
            if key != "cov_sqrt":
                parts = [(w / total) * t[layer][key] for t, w in zip(targets, weights, strict=True)]
                mixed[key] = torch.stack(parts).sum(0)
        if kind != "gram":
            mixed["cov_sqrt"] = _sqrtm(mixed["cov"])
        out[layer] = mixed
    return out


def style_layer_loss(features: torch.Tensor, target: Mapping[str, torch.Tensor], kind: str):
    """`style_layer_losses` averaged over the batch."""
    return style_layer_losses(features, target, kind).mean()


def style_layer_losses(
    features: torch.Tensor, target: Mapping[str, torch.Tensor], kind: str
) -> torch.Tensor:
    """One layer's style loss of each batch item against its own target (targets have one row,
    shared by all items, or one row per item), as a (B,) tensor."""
    if kind == "gram":
        return statistic_losses({"gram": gram(features)}, target, kind)
    mean, cov = mean_cov(features)
    return statistic_losses({"mean": mean, "cov": cov}, target, kind)


def statistic_losses(
    stats: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], kind: str
) -> torch.Tensor:
    """`style_layer_losses` from the picture's statistics ({"gram"} or {"mean", "cov"}) rather
    than its features: engine.tiling sums those over tiles and differentiates this on its own."""
    if kind == "gram":
        g = stats["gram"]
        return _per_item_mse(g, target["gram"].expand(g.shape[0], -1, -1))
    # W2² between Gaussians: |μ-μs|² + tr C + tr Cs − 2 tr (Cs^½ C Cs^½)^½, per channel.
    mean, cov = stats["mean"], stats["cov"]
    cov = _ridge(cov).double()  # both covariances ridged alike, so W2 stays >= 0
    root = target["cov_sqrt"].double()
    inner = root @ cov @ root
    eig = torch.linalg.eigvalsh((inner + inner.transpose(-1, -2)) / 2).clamp_min(1e-30)
    trace = cov.diagonal(dim1=-2, dim2=-1).sum(-1) + target["cov"].diagonal(dim1=-2, dim2=-1).sum(
        -1
    )
    w2 = (mean - target["mean"]).pow(2).sum(-1) + trace.float() - 2 * eig.sqrt().sum(-1).float()
    return w2 / cov.shape[-1]


def stack_targets(targets: Sequence[Targets]) -> Targets:
    """Per-job targets (one row each) stacked into one batch of targets, row i for job i."""
    return {
        layer: {key: torch.cat([t[layer][key] for t in targets]) for key in targets[0][layer]}
        for layer in targets[0]
    }


def select_targets(targets: Targets, index: torch.Tensor) -> Targets:
    return {layer: {k: v[index] for k, v in t.items()} for layer, t in targets.items()}


class GatysLoss:
    """Binds an extractor, content features and style targets to one weighted objective per
    batch row: row i has its own content features, targets and (content, style, TV) weights,
    and its loss depends on nothing else, so the gradient of the summed losses is each row's
    own gradient. All rows share the layers and the style loss kind."""

    def __init__(
        self,
        net: VGGFeatures,
        weights: LossWeights | Sequence[LossWeights],
        content_features: dict[str, torch.Tensor],
        style_targets: Targets,
    ) -> None:
        rows = [weights] if isinstance(weights, LossWeights) else list(weights)
        self.net, self.w = net, rows[0]
        self.rows = rows
        device = next(iter(content_features.values())).device
        self.factors = torch.tensor(
            [[w.content, w.style, w.tv] for w in rows], dtype=torch.float32, device=device
        )
        self.content = {k: v.detach().float() for k, v in content_features.items()}
        self.style = style_targets
        self.layers = tuple(dict.fromkeys(self.w.content_layers + self.w.style_layers))

    def select(self, rows: Sequence[int] | torch.Tensor) -> GatysLoss:
        """The objective of some rows only (in that order)."""
        index = torch.as_tensor(rows, dtype=torch.long, device=self.factors.device)
        picked = GatysLoss.__new__(GatysLoss)
        picked.net, picked.w, picked.layers = self.net, self.w, self.layers
        picked.rows = [self.rows[i] for i in index.tolist()]
        picked.factors = self.factors[index]
        picked.content = {k: v[index] for k, v in self.content.items()}
        picked.style = select_targets(self.style, index)
        return picked

    def parts(
        self, image: torch.Tensor, features: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Content, style, TV and weighted total of each row, as (B,) tensors."""
        w = self.w
        zero = torch.zeros(image.shape[0], device=image.device)
        content = sum(
            (_per_item_mse(features[n].float(), self.content[n]) for n in w.content_layers), zero
        )
        style = sum(
            (
                lw * style_layer_losses(features[n], self.style[n], w.kind)
                for n, lw in zip(w.style_layers, w.layer_weights, strict=True)
            ),
            zero,
        )
        tv = total_variations(image.float())
        c, s, t = self.factors.unbind(1)
        total = c * content + s * style + t * tv
        return {"content": content, "style": style, "tv": tv, "total": total}

    def value_and_grad(
        self, ctx: Context, image: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each row's total loss at `image` (B,) and its gradient (the gradient of the rows' sum),
        from one network forward and backward.

        For Gram style losses (with weights >= 0) the loss's own gradient with respect to the
        features is written out (`_gram_value_and_feature_grads`) and only the network goes
        through autograd: the autograd graph of `parts` dispatched 186 operators per evaluation
        at 32 px (VGG19, five style layers; bench/step_profile.py), this about a third."""
        x = image.detach().requires_grad_(True)
        features = ctx.features(x, self.layers)
        if self.w.kind != "gram" or any(min(w.content, w.style, w.tv) < 0 for w in self.rows):
            total = self.parts(x, features)["total"]
            (grad,) = torch.autograd.grad(total.sum(), x)
            return total.detach(), grad
        with torch.no_grad():
            total, feature_grads, image_grad = self._gram_value_and_feature_grads(x, features)
        names = list(feature_grads)
        outputs = [features[n] for n in names]
        (grad,) = torch.autograd.grad(outputs, x, [feature_grads[n] for n in names])
        return total, grad.add_(image_grad)

    def _row_scales(
        self, image: torch.Tensor, features: dict[str, torch.Tensor]
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per term, (r, q) with r² the term's weight per row, so that Σ ‖r·diff‖² is the total
        loss and q·(r·diff) its gradient's factor. Made once per objective (one size, one
        set of rows), so an evaluation multiplies by them instead of recomputing them."""
        cached = getattr(self, "_scales", None)
        if cached is not None and cached[0] == image.shape:
            return cached[1]
        c_weight, s_weight, t_weight = self.factors.unbind(1)
        scales: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name, layer_weight in zip(self.w.style_layers, self.w.layer_weights, strict=True):
            _, c, h, width = features[name].shape
            r = (s_weight * (layer_weight / c**2)).sqrt().view(-1, 1, 1)
            scales["style:" + name] = (r, r * (4 / (c * h * width)))
        for name in self.w.content_layers:
            r = (c_weight / features[name][0].numel()).sqrt().view(-1, 1, 1, 1)
            scales["content:" + name] = (r, 2 * r)
        _, channels, h, width = image.shape
        for name, count in (
            ("down", channels * (h - 1) * width),
            ("right", channels * h * (width - 1)),
        ):
            r = (t_weight / count).sqrt().view(-1, 1)
            scales["tv:" + name] = (r, 2 * r)
        self._scales = (image.shape, scales)
        return scales

    def _gram_value_and_feature_grads(
        self, image: torch.Tensor, features: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        """`parts(...)["total"]` for Gram style losses, with d total / d features and the total
        variation's d total / d image. Per style layer, with G = FFᵀ/n (n = C·H·W) and the
        target T, the loss is mean((G − T)²) over C², so d/dF = 4·(G − T)·F / (C²·n) (G − T is
        symmetric). Every term is a weighted sum of squares, so the total is one dot product
        of all the weighted differences. Statistics in fp32; the features' gradient in their
        own precision."""
        scales = self._row_scales(image, features)
        terms: list[torch.Tensor] = []
        grads: dict[str, torch.Tensor] = {}
        for name in self.w.style_layers:
            feats = features[name]
            b, c, h, width = feats.shape
            r, q = scales["style:" + name]
            channels_last = feats.is_contiguous(memory_format=torch.channels_last)
            if channels_last and not feats.is_contiguous():
                flat = feats.permute(0, 2, 3, 1).reshape(b, h * width, c)  # (b, hw, c)
            else:
                flat = feats.reshape(b, c, h * width)  # (b, c, hw)
            wide = flat.float() if flat.dtype in (torch.bfloat16, torch.float16) else flat
            target = self.style[name]["gram"]
            n = c * h * width
            if flat.shape[1] == c:
                diff = torch.baddbmm(target, wide, wide.mT, beta=-1, alpha=1 / n)
            else:
                diff = torch.baddbmm(target, wide.mT, wide, beta=-1, alpha=1 / n)
            weighted = diff * r
            terms.append(weighted.flatten(1))
            scaled = weighted * q
            if scaled.dtype != flat.dtype:
                scaled = scaled.to(flat.dtype)
            if flat.shape[1] == c:
                grads[name] = torch.bmm(scaled, flat).view(b, c, h, width)
            else:
                grads[name] = torch.bmm(flat, scaled).view(b, h, width, c).permute(0, 3, 1, 2)
        for name in self.w.content_layers:
            feats = features[name]
            r, q = scales["content:" + name]
            weighted = (feats.float() - self.content[name]) * r
            terms.append(weighted.flatten(1))
            grad = weighted * q
            if grad.dtype != feats.dtype:
                grad = grad.to(feats.dtype)
            grads[name] = grads[name] + grad if name in grads else grad
        down, right, kernels = _neighbour_differences(image.float())
        (r_down, q_down), (r_right, q_right) = scales["tv:down"], scales["tv:right"]
        down, right = down * r_down, right * r_right
        terms += [down, right]
        every = torch.cat(terms, 1)
        total = torch.linalg.vecdot(every, every)
        grad_image = _neighbour_adjoint(down * q_down, right * q_right, image.shape, kernels)
        return total, grads, grad_image.to(image.dtype)


_DIFFERENCES: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}


def _neighbour_differences(
    image: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Each row's down and right neighbour differences, flattened, as depthwise 2-tap
    convolutions (one operator each instead of two slices and a subtraction, and their adjoint
    is one transposed convolution instead of two pads); and the two kernels."""
    key = (image.device, image.dtype)
    if key not in _DIFFERENCES:
        tap = torch.tensor([-1.0, 1.0], dtype=image.dtype, device=image.device)
        _DIFFERENCES[key] = (
            tap.view(1, 1, 2, 1).repeat(3, 1, 1, 1),
            tap.view(1, 1, 1, 2).repeat(3, 1, 1, 1),
        )
    kernels = _DIFFERENCES[key]
    down = F.conv2d(image, kernels[0], groups=3).flatten(1)
    right = F.conv2d(image, kernels[1], groups=3).flatten(1)
    return down, right, kernels


def _neighbour_adjoint(
    down: torch.Tensor,
    right: torch.Tensor,
    shape: torch.Size,
    kernels: tuple[torch.Tensor, torch.Tensor],
) -> torch.Tensor:
    """The image gradient of Σ down·Δ_down + Σ right·Δ_right (the transposed differences)."""
    b, c, h, w = shape
    grad = F.conv_transpose2d(down.view(b, c, h - 1, w), kernels[0], groups=3)
    return grad.add_(F.conv_transpose2d(right.view(b, c, h, w - 1), kernels[1], groups=3))


def finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
