"""Loss terms against hand computations on tiny tensors."""

from __future__ import annotations

import pytest
import torch

from engine.losses import (
    LossWeights,
    blend_targets,
    gram,
    strength_to_style_weight,
    style_layer_loss,
    style_statistics,
    total_variation,
)
from engine.options import StylizeOptions
from tests.engine.tolerance import worst_case


def test_gram_matches_hand_computation() -> None:
    # Two channels over a 2x2 map: a = [1, 2, 3, 4], b = [0, 1, 0, 1].
    f = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [0.0, 1.0]]]])
    # a·a = 30, a·b = 6, b·b = 2; normalized by C·H·W = 8.
    expected = torch.tensor([[[30.0, 6.0], [6.0, 2.0]]]) / 8
    assert torch.equal(gram(f), expected)  # small integers over a power of 2: exact in fp32


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_gram_gradient_matches_finite_differences(fmt: torch.memory_format) -> None:
    """gram() has a hand-written backward (one matmul); check it against torch's numerics."""
    g = torch.Generator().manual_seed(3)
    f = torch.randn((2, 5, 4, 3), generator=g, dtype=torch.float64).contiguous(memory_format=fmt)
    assert torch.autograd.gradcheck(gram, (f.requires_grad_(True),))


def test_gram_of_bf16_features_is_fp32_and_matches() -> None:
    """Both layouts' fp32 Grams are within the worst-case rounding of their 30-term dot products
    (and the division by C·H·W) of the exact one, in fp64, where products of bf16 values (16
    significant bits) and their sums are exact; the bound holds in any order of summation, so
    on every kernel path (the old rtol=1e-5, atol=1e-7 only happened to)."""
    g64 = torch.Generator().manual_seed(0)
    f = torch.randn((1, 8, 6, 5), generator=g64).to(torch.bfloat16)
    f = f.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    g = gram(f)
    assert g.dtype == torch.float32
    exact = gram(f.detach().double())
    bound = worst_case(6 * 5 + 1) * gram(f.detach().double().abs())  # γ_n · |F||F|ᵀ / n
    for made in (g, gram(f.detach().float().contiguous())):
        assert bool(((made.double() - exact).abs() <= bound).all())
    (grad,) = torch.autograd.grad(g.sum(), f)
    assert grad.dtype == torch.bfloat16 and grad.shape == f.shape


def test_total_variation_matches_hand_computation() -> None:
    x = torch.tensor([[[[0.0, 1.0, 3.0], [2.0, 2.0, 2.0]]]])  # 1x1x2x3
    # down diffs: 2, 1, -1 -> squares 4, 1, 1 -> mean 2; right diffs: 1, 2, 0, 0 -> mean 5/4.
    assert total_variation(x).item() == 2.0 + 1.25  # every step exact in fp32


def test_gram_style_loss_is_zero_on_its_own_target_and_positive_elsewhere() -> None:
    torch.manual_seed(0)
    f, g = torch.rand(1, 4, 5, 6), torch.rand(1, 4, 5, 6) * 2
    target = style_statistics(f, "gram")
    # the same Gram by the same kernel: exactly 0 on any path
    assert style_layer_loss(f, target, "gram").item() == 0.0
    assert style_layer_loss(g, target, "gram").item() > 1e-3


def test_wasserstein_style_loss_vanishes_on_matching_statistics() -> None:
    torch.manual_seed(0)
    f = torch.rand(1, 3, 8, 8)
    target = style_statistics(f, "wasserstein")
    same = style_layer_loss(f, target, "wasserstein").item()
    shifted = style_layer_loss(f + 1.0, target, "wasserstein").item()
    # Shifting every channel's mean by 1 adds exactly |Δμ|² = 3, averaged over 3 channels.
    assert same == pytest.approx(0.0, abs=2e-4)
    assert shifted == pytest.approx(1.0, abs=2e-3)


def test_blend_is_the_weighted_average_of_targets() -> None:
    a = {"relu1_1": {"gram": torch.ones(1, 2, 2)}}
    b = {"relu1_1": {"gram": torch.zeros(1, 2, 2)}}
    mixed = blend_targets([a, b], [3.0, 1.0], "gram")
    assert torch.equal(mixed["relu1_1"]["gram"], torch.full((1, 2, 2), 0.75))  # exact in fp32


def test_strength_is_monotonic_and_clamped() -> None:
    weights = [strength_to_style_weight(s) for s in (0.0, 0.25, 0.5, 0.85, 1.0)]
    assert weights == sorted(weights) and len(set(weights)) == 5
    assert strength_to_style_weight(-3) == weights[0]
    assert strength_to_style_weight(7) == weights[-1]


def test_explicit_weights_override_strength() -> None:
    w = LossWeights.from_options(
        StylizeOptions(strength=0.9, style_weight=5.0, content_weight=2.0, tv_weight=0.0)
    )
    assert (w.style, w.content, w.tv) == (5.0, 2.0, 0.0)
    with pytest.raises(ValueError):
        LossWeights.from_options(StylizeOptions(style_layer_weights=(1.0, 2.0)))


def test_wasserstein_survives_dead_channels() -> None:
    """Trained VGGs have all-zero channels: singular covariances with repeated zero eigenvalues
    once made eigh fail to converge and let the loss go negative."""
    torch.manual_seed(3)
    f = torch.relu(torch.randn(1, 64, 6, 6))
    f[:, 10:40] = 0  # dead channels
    target = style_statistics(f, "wasserstein")
    g = torch.relu(torch.randn(1, 64, 6, 6)).requires_grad_(True)
    loss = style_layer_loss(g, target, "wasserstein")
    loss.backward()
    assert loss.item() > 0 and torch.isfinite(g.grad).all()  # type: ignore[arg-type]
    assert style_layer_loss(f, target, "wasserstein").item() == pytest.approx(0.0, abs=1e-3)
