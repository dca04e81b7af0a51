"""engine.lbfgs: box-constrained L-BFGS on problems whose minimizer is known."""

from __future__ import annotations

import itertools

import pytest
import torch

from engine.lbfgs import BatchBoxLBFGS, BoxLBFGS, pyramid_preconditioner


def quadratic(target: torch.Tensor, scales: torch.Tensor):  # type: ignore[no-untyped-def]
    """f(x) = Σ scales·(x − target)²: separable, so the box minimizer is clamp(target)."""

    def evaluate(x: torch.Tensor) -> tuple[float, torch.Tensor]:
        diff = x - target
        return float((scales * diff * diff).sum()), 2 * scales * diff

    return evaluate


@pytest.mark.parametrize("strength", [0.0, 0.25])
def test_reaches_the_clamped_minimizer_of_an_ill_conditioned_quadratic(strength: float) -> None:
    g = torch.Generator().manual_seed(0)
    # float64: in fp32 f stops resolving coordinates long before they converge
    shape, f64 = (1, 3, 16, 16), torch.float64
    target = torch.rand(shape, generator=g, dtype=f64) * 1.6 - 0.3  # a fifth outside [0, 1]
    scales = 10 ** (torch.rand(shape, generator=g, dtype=f64) * 3)  # condition number 1000
    pre = pyramid_preconditioner(strength, 3) if strength else None
    box = BoxLBFGS(torch.full_like(target, 0.5), quadratic(target, scales), precondition=pre)
    for _ in range(200):
        box.step()
    assert torch.allclose(box.x, target.clamp(0, 1), atol=1e-3)


def test_never_leaves_the_box_and_never_accepts_a_rise() -> None:
    target = torch.linspace(-2, 3, 64).reshape(1, 1, 8, 8)
    box = BoxLBFGS(torch.full_like(target, 0.5), quadratic(target, torch.ones_like(target)))
    losses = [box.step() for _ in range(30)]
    assert all(b <= a for a, b in itertools.pairwise(losses))
    assert box.x.min() >= 0 and box.x.max() <= 1


def test_an_overshooting_step_is_halved_until_the_loss_falls() -> None:
    """f = 1e6·(x − 0.5)² from x = 0.49: the first step moves 0.05 to 0.54 (loss 1600 > 100),
    half of it to 0.515 (225) is still worse, a quarter to 0.5025 (6.25) is taken."""
    target = torch.full((1, 1, 4, 4), 0.5)
    quad = quadratic(target, torch.full_like(target, 1e6))
    seen: list[float] = []

    def evaluate(x: torch.Tensor) -> tuple[float, torch.Tensor]:
        seen.append(float(x.mean()))
        return quad(x)

    box = BoxLBFGS(torch.full_like(target, 0.49), evaluate)
    assert box.step() == pytest.approx(16 * 6.25, rel=1e-3)  # 16 pixels
    assert seen == pytest.approx([0.49, 0.54, 0.515, 0.5025], abs=1e-6)


def test_the_pyramid_preconditioner_is_symmetric_and_positive() -> None:
    g = torch.Generator().manual_seed(1)
    apply = pyramid_preconditioner(0.25, 4)
    u, v = (torch.randn((1, 3, 20, 30), generator=g) for _ in range(2))
    assert float((apply(u) * v).sum()) == pytest.approx(float((u * apply(v)).sum()), rel=1e-5)
    assert float((apply(u) * u).sum()) >= float((u * u).sum())  # P = I + PSD terms


def test_batched_rows_follow_their_own_paths() -> None:
    """Rows of one BatchBoxLBFGS are the problems run alone: same points, same losses, each with
    its own memory and line search (row 1 is stiff enough to need halvings)."""
    g = torch.Generator().manual_seed(3)
    f64 = torch.float64
    targets = torch.rand((3, 1, 8, 8), generator=g, dtype=f64) * 1.4 - 0.2
    scales = torch.stack([torch.ones(1, 8, 8), torch.full((1, 8, 8), 1e6), torch.rand(1, 8, 8)])
    scales = scales.to(f64) + 0.1

    def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        rows = list(range(x.shape[0])) if x.shape[0] == 3 else [row]
        diff = x - targets[rows]
        return (scales[rows] * diff * diff).flatten(1).sum(1), 2 * scales[rows] * diff

    row = -1
    start = torch.full_like(targets, 0.45)
    batch = BatchBoxLBFGS(start, evaluate, history=5)
    together = torch.stack([batch.step() for _ in range(25)])
    for row in range(3):
        alone = BatchBoxLBFGS(start[row : row + 1], evaluate, history=5)
        losses = [float(alone.step()[0]) for _ in range(25)]
        assert together[:, row].tolist() == pytest.approx(losses, rel=1e-9, abs=1e-12)
        assert torch.allclose(batch.x[row : row + 1], alone.x, atol=1e-9)


def test_keep_drops_rows_and_the_rest_carry_on() -> None:
    target = torch.linspace(0, 1, 2 * 16, dtype=torch.float64).reshape(2, 1, 4, 4)

    def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        diff = x - kept
        return (diff * diff).flatten(1).sum(1), 2 * diff

    kept = target
    batch = BatchBoxLBFGS(torch.full_like(target, 0.5), evaluate)
    batch.step()
    batch.keep([1])
    kept = target[1:]
    for _ in range(20):
        batch.step()
    assert batch.x.shape[0] == 1
    assert torch.allclose(batch.x, target[1:], atol=1e-6)
