"""engine.lbfgs: box-constrained L-BFGS on problems whose minimizer is known."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from engine.lbfgs import MAX_HALVINGS, BatchBoxLBFGS, BoxLBFGS, pyramid_preconditioner
from engine.observability.dispatches import buckets, host_reads, labelled


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
    target = torch.full((1, 1, 4, 4), 0.5, dtype=torch.float64)  # the points to 1e-12, any CPU
    quad = quadratic(target, torch.full_like(target, 1e6))
    seen: list[float] = []

    def evaluate(x: torch.Tensor) -> tuple[float, torch.Tensor]:
        seen.append(float(x.mean()))
        return quad(x)

    box = BoxLBFGS(torch.full_like(target, 0.49), evaluate)
    assert box.step() == pytest.approx(16 * 6.25, rel=1e-3)  # 16 pixels
    assert seen == pytest.approx([0.49, 0.54, 0.515, 0.5025], abs=1e-12)


def test_the_pyramid_preconditioner_is_symmetric_and_positive() -> None:
    """⟨Pu, v⟩ = ⟨u, Pv⟩ in fp64 (1e-10; the fp32 check at 1e-5 hung on the sum order)."""
    g = torch.Generator().manual_seed(1)
    apply = pyramid_preconditioner(0.25, 4)
    u, v = (torch.randn((1, 3, 20, 30), generator=g, dtype=torch.float64) for _ in range(2))
    assert float((apply(u) * v).sum()) == pytest.approx(float((u * apply(v)).sum()), rel=1e-10)
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


def _two_loop(
    g: torch.Tensor,
    pairs: list[tuple[torch.Tensor, torch.Tensor]],
    precondition: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """The textbook two-loop recursion (Nocedal & Wright, Alg. 7.4) with H0 = γP, γ from the
    newest pair: what engine.lbfgs computed until it moved to the compact form."""
    q, alphas = g.clone(), []
    for s, y in reversed(pairs):
        a = (s * q).sum() / (s * y).sum()
        alphas.append(a)
        q -= a * y
    s, y = pairs[-1]
    q = precondition(q) * ((s * y).sum() / (y * precondition(y)).sum())
    for (s, y), a in zip(pairs, reversed(alphas), strict=True):
        b = (y * q).sum() / (s * y).sum()
        q += (a - b) * s
    return -q


def test_directions_are_the_two_loop_recursions_to_1e10() -> None:
    """fp64, a smooth problem with an interior minimum (no pixel at a bound, every unit step
    taken), the pyramid preconditioner, a memory of 4 that wraps around several times: every
    direction the optimizer takes is the two-loop recursion's over its last 4 pairs (measured:
    at most 1.7e-14 apart)."""
    g = torch.Generator().manual_seed(5)
    f64 = torch.float64
    target = torch.rand((1, 3, 12, 10), generator=g, dtype=f64) * 0.4 + 0.3
    scales = 10 ** (torch.rand((1, 3, 12, 10), generator=g, dtype=f64) * 2)

    def gradient(x: torch.Tensor) -> torch.Tensor:
        d = x - target
        return 2 * scales * d + 4 * d**3

    seen: list[torch.Tensor] = []

    def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seen.append(x.clone())
        d = x - target
        return (scales * d * d + d**4).flatten(1).sum(1), gradient(x)

    pre = pyramid_preconditioner(0.25, 2)
    box = BatchBoxLBFGS(torch.full_like(target, 0.5), evaluate, history=4, precondition=pre)
    for _ in range(14):
        box.step()
    points = seen  # x0, then each step's trial, every one of them accepted
    assert all(float(p.min()) > 0 and float(p.max()) < 1 for p in points)
    for k in range(2, len(points) - 1):
        pairs = [
            (points[i + 1] - points[i], gradient(points[i + 1]) - gradient(points[i]))
            for i in range(max(0, k - 4), k)
        ]
        expected = _two_loop(gradient(points[k]), pairs, pre)
        taken = points[k + 1] - points[k]
        assert float((taken - expected).norm() / expected.norm()) < 1e-10, k


def _ops_per_step(history: int) -> int:
    """Outermost operators dispatched by one step (its evaluation excluded), memory full."""
    target = torch.rand((2, 3, 16, 16), generator=torch.Generator().manual_seed(0))

    def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with labelled("evaluate"):
            diff = x - target
            return (diff * diff).flatten(1).sum(1), 2 * diff

    box = BatchBoxLBFGS(torch.full_like(target, 0.5), evaluate, history=history)
    box.precondition = pyramid_preconditioner(0.25, 3)
    for _ in range(history + 3):
        box.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        box.step()
    events = list(prof.events())
    assert not host_reads(events), "a step read the device back"
    return sum(1 for _, b in buckets(events, ("evaluate",), "update") if b == "update")


def test_a_step_dispatches_as_many_operators_whatever_its_memory() -> None:
    """The two-loop recursion dispatched 21 more operators per stored pair (1,071 at history
    50); the compact form's count is the same at 3 pairs as at 50, and no step reads back."""
    few, many = _ops_per_step(3), _ops_per_step(50)
    assert few == many
    assert many < 200


def test_the_update_compiles_whole_and_once_as_the_memory_fills() -> None:
    """Capturable: torch.compile(fullgraph=True) takes the update without a graph break, and
    does not recompile while the memory fills and wraps (it recompiled every step before and
    gave up at the 8th). aot_eager traces exactly as inductor does, without the C++ build. In
    fp64, so a rounding difference of the traced graph cannot flip a line search (measured:
    the two paths bitwise equal, in fp32 as in fp64)."""
    import torch._dynamo

    g = torch.Generator().manual_seed(0)
    target = torch.rand((2, 3, 16, 16), generator=g, dtype=torch.float64)

    def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        diff = x - target
        return (diff * diff).flatten(1).sum(1), 2 * diff

    pre = pyramid_preconditioner(0.25, 3)
    eager = BatchBoxLBFGS(torch.full_like(target, 0.5), evaluate, history=4, precondition=pre)
    compiled = BatchBoxLBFGS(torch.full_like(target, 0.5), evaluate, history=4, precondition=pre)
    torch._dynamo.reset()
    compiled.update = torch.compile(compiled.update, fullgraph=True, backend="aot_eager")  # type: ignore[method-assign]
    with torch._dynamo.config.patch(error_on_recompile=True):
        for _ in range(12):
            assert torch.allclose(compiled.step(), eager.step(), rtol=1e-10, atol=0)
    torch._dynamo.reset()


@pytest.mark.parametrize(
    "faults",
    [(3,), (3, 8), tuple(range(5, 5 + MAX_HALVINGS + 2))],
    ids=["once", "nan-then-inf", "a-whole-line-search"],
)
def test_a_non_finite_gradient_is_rejected_like_a_non_finite_loss(faults: tuple[int, ...]) -> None:
    """Issue 30, finding 11: a finite loss whose gradient holds a NaN or an inf was accepted, and
    every later direction of that row was NaN: it stayed at 12.2 (3.6 when the fault spans a
    whole line search) where the clean row reaches 4e-14. Row 1 is row 0's problem with one
    gradient entry poisoned at the evaluations in `faults` (alternately NaN and inf, the loss
    left finite): rejected and halved, it converges like row 0."""
    g = torch.Generator().manual_seed(7)
    f64 = torch.float64
    target = (torch.rand((1, 1, 8, 8), generator=g, dtype=f64) * 0.8 + 0.1).expand(2, -1, -1, -1)
    scales = 10 ** (torch.rand((1, 1, 8, 8), generator=g, dtype=f64) * 2)
    calls = 0

    def evaluate(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal calls
        calls += 1
        diff = x - target
        grad = 2 * scales * diff
        if calls in faults:
            grad[1, 0, 2, 3] = (math.nan, math.inf)[faults.index(calls) % 2]
        return (scales * diff * diff).flatten(1).sum(1), grad

    box = BatchBoxLBFGS(torch.full_like(target, 0.5), evaluate, history=5)
    losses = torch.stack([box.step() for _ in range(100)])
    assert losses[-1].tolist() == pytest.approx([0.0, 0.0], abs=1e-9)
    assert bool((losses[1:] <= losses[:-1]).all()), "a row accepted a rise"
    state = {"x": box.x, "g": box.g, "memory": box.memory}
    assert all(bool(v.isfinite().all()) for v in state.values()), "a non-finite value was kept"
