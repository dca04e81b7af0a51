"""engine.optimize: one loop over one scale for several lanes (jobs) at once."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from engine.context import Context
from engine.losses import GatysLoss, LossWeights, style_statistics
from engine.model import load_features
from engine.observability.dispatches import host_reads, outermost
from engine.optimize import Lane, optimize
from engine.options import StylizeOptions, Tuning


def _problem(weights: Path, rows: int) -> tuple[Context, GatysLoss, torch.Tensor]:
    net = load_features("vgg16", str(weights), "cpu")
    ctx = Context(net, torch.device("cpu"), "fp32", one_forward=True)
    w = LossWeights.from_options(StylizeOptions())
    g = torch.Generator().manual_seed(0)
    content = torch.rand((rows, 3, 32, 32), generator=g)
    style = torch.rand((rows, 3, 32, 32), generator=g)
    with torch.no_grad():
        feats = ctx.features(content, w.content_layers)
        targets = {
            n: style_statistics(f, w.kind) for n, f in ctx.features(style, w.style_layers).items()
        }
    return ctx, GatysLoss(net, [w] * rows, feats, targets), content


def test_each_lane_runs_its_own_budget_and_reads_back_every_k_steps(
    random_weights_vgg16: Path,
) -> None:
    ctx, loss, start = _problem(random_weights_vgg16, 2)
    heard: list[list[int]] = [[], []]
    lanes = [
        Lane(steps, 0.0, None, lambda step, value, best, i=i: heard[i].append(step))
        for i, steps in enumerate((3, 6))
    ]
    out = optimize(ctx, loss, start, lanes, tuning=Tuning(progress_every=2))
    assert [o.steps_run for o in out] == [3, 6]
    # every 2nd step and each lane's last; a read-back serves all lanes, so lane 2 hears 3 too
    assert heard == [[2, 3], [2, 3, 4, 6]]
    assert all(o.best is not None and o.best.shape == (1, 3, 32, 32) for o in out)
    assert all(o.error is None and not o.early_stopped for o in out)


def test_batched_adam_lowers_every_lane(random_weights_vgg16: Path) -> None:
    ctx, loss, start = _problem(random_weights_vgg16, 2)
    first: list[float] = []
    lanes = [
        Lane(8, 0.0, None, lambda step, value, best: first.append(value) if step == 1 else None)
        for _ in range(2)
    ]
    out = optimize(ctx, loss, start, lanes, optimizer="adam")
    assert all(o.best_loss < f for o, f in zip(out, first, strict=True))


def test_a_run_reads_the_device_back_only_every_k_steps(random_weights_vgg16: Path) -> None:
    """The sync budget, counted (not timed) with the profiler on the GPU path (one forward for
    the batch, a read-back every 8 steps): 24 steps of 2 rows read back 3 times plus once while
    setting up, and dispatch at most 350 operators a step (1,253 before; issue "Every launch
    paints")."""
    ctx, loss, start = _problem(random_weights_vgg16, 2)
    lanes = [Lane(24, 0.0, None, lambda *a: None) for _ in range(2)]
    optimize(ctx, loss, start, lanes, tuning=Tuning(progress_every=1))  # warm: kernels, caches
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        out = optimize(ctx, loss, start, lanes, tuning=Tuning(progress_every=8))
    events = list(prof.events())
    reads = host_reads(events)
    assert [o.steps_run for o in out] == [24, 24]
    assert reads["item"] == reads["nonzero"] == 0
    assert sum(reads.values()) <= 3 + 1, reads
    assert len(outermost(events)) / 24 <= 350
