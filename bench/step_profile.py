"""What one optimizer step dispatches and where it waits for the host, counted on the CPU.

    .venv/bin/python bench/step_profile.py                  # B = 1, 4, 16; ~1 min on 2 cores
    .venv/bin/python bench/step_profile.py --batches 1 --json /tmp/steps.json

On a GPU every PyTorch operator dispatched in eager mode is at least one kernel launch (~5-10 µs
of host time), and every host read (`nonzero`, `.item()`, `.tolist()`, a tensor built from
Python data) stalls the stream; both are counted here on the CPU, where the counts are the same
and stable while times are not. The run is the issue's: VGG19 with random weights, 32 px, fp32,
the balanced loss weights, early stop off, one forward for the whole batch (the GPU path) and
the loss read back every 8 steps as on CUDA.

Each outermost `aten::` event is put in one bucket: `network` (the VGG forward and its
backward), `loss` (the Gatys loss forward and backward), `evaluate` (the rest of one
evaluation: best-image bookkeeping, the gradient call), `update` (the optimizer's own work in a
step, outside its evaluations) and `loop` (engine.optimize between steps: history, read-backs,
progress). Backward ops are matched to the forward op that made their autograd node by its
sequence number. Three windows per batch size: `run` (every step of a 120-step run, averaged),
`empty` (its first 8 steps: the curvature memory is nearly empty) and `full` (the last 8: the
memory is full).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.autograd.profiler import record_function
from torch.profiler import ProfilerActivity, profile

REPO = Path(__file__).resolve().parent.parent
BUCKETS = ("network", "loss", "evaluate", "update", "loop")
# Host reads: a scalar or list read back, a data-dependent shape, a tensor made from Python data.
SYNC_OPS = {
    "aten::_local_scalar_dense": "item",
    "aten::nonzero": "nonzero",
    "aten::resolve_neg": "tolist",  # Tensor.tolist() dispatches resolve_conj + resolve_neg
    "aten::lift_fresh": "python_data",
}
LABEL = "orsay."


def _label(event: Any) -> str | None:
    name = event.name
    return name[len(LABEL) :] if name.startswith(LABEL) else None


def _ancestors(event: Any) -> Iterator[Any]:
    parent = event.cpu_parent
    while parent is not None:
        yield parent
        parent = parent.cpu_parent


def classify(events: list[Any]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(step, bucket) of every outermost aten:: event and (step, kind) of every host read.

    `step` is the 0-based index of the optimizer step the event happened in or after."""
    steps = sorted(
        (e for e in events if e.name == LABEL + "step"), key=lambda e: e.time_range.start
    )
    starts = [s.time_range.start for s in steps]

    def step_of(event: Any) -> int:
        t = event.time_range.start
        index = 0
        lo, hi = 0, len(starts)
        while lo < hi:  # last step that started at or before t
            mid = (lo + hi) // 2
            if starts[mid] <= t:
                lo = mid + 1
            else:
                hi = mid
        index = lo - 1
        return max(index, 0)

    forward_label: dict[int, str] = {}
    for e in events:
        if e.name.startswith("aten::") and e.sequence_nr >= 0 and not e.name.startswith("aten::_"):
            labels = [lab for a in _ancestors(e) if (lab := _label(a))]
            if labels and labels[0] in ("network", "loss"):
                forward_label.setdefault(e.sequence_nr, labels[0])
    ops: list[tuple[int, str]] = []
    syncs: list[tuple[int, str]] = []
    for e in events:
        if not e.name.startswith("aten::"):
            continue
        chain = list(_ancestors(e))
        if e.name in SYNC_OPS and (
            e.name == "aten::_local_scalar_dense"
            or not any(a.name.startswith("aten::") for a in chain)
        ):
            syncs.append((step_of(e), SYNC_OPS[e.name]))
        if any(a.name.startswith("aten::") for a in chain):
            continue
        bucket = None
        for a in chain:
            if a.name.startswith("autograd::engine::evaluate_function"):
                bucket = forward_label.get(a.sequence_nr)
                if bucket is None:
                    bucket = "loss"  # custom autograd Functions of the loss (e.g. _Gram)
                break
            lab = _label(a)
            if lab in ("network", "loss", "evaluate", "update"):
                bucket = lab
                break
            if lab == "step":
                bucket = "update"
                break
        ops.append((step_of(e), bucket or "loop"))
    return ops, syncs


@contextlib.contextmanager
def labelled(name: str) -> Iterator[None]:
    with record_function(LABEL + name):
        yield


def instrument() -> None:
    """Label the network and loss calls so their ops (and their backward) can be told apart."""
    from engine import losses, objective

    def wrap(cls: type, method: str, name: str) -> None:
        original = getattr(cls, method)

        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            with labelled(name):
                return original(self, *args, **kwargs)

        setattr(cls, method, wrapped)

    wrap(objective.Context, "features", "network")
    wrap(losses.GatysLoss, "parts", "loss")  # the autograd path (Wasserstein style losses)
    wrap(losses.GatysLoss, "_gram_value_and_feature_grads", "loss")


def labelled_factory(name: str) -> Callable[..., Any]:
    """engine.optimize's optimizer factory `name`, with its steps and evaluations labelled."""
    from engine.optimize import make_optimizer

    inner = make_optimizer(name)

    def factory(x: torch.Tensor, evaluate: Any, tuning: Any) -> Any:
        def labelled_evaluate(*args: Any) -> Any:
            with labelled("evaluate"):
                return evaluate(*args)

        opt = inner(x, labelled_evaluate, tuning)
        step = opt.step

        def labelled_step() -> Any:
            with labelled("step"):
                return step()

        opt.step = labelled_step
        return opt

    return factory


def problem(batch: int, side: int, weights: Path) -> tuple[Any, Any, torch.Tensor]:
    from engine.losses import GatysLoss, LossWeights, style_statistics
    from engine.model import load_features
    from engine.objective import Context
    from engine.options import StylizeOptions

    net = load_features("vgg19", str(weights), "cpu")
    ctx = Context(net, torch.device("cpu"), "fp32", one_forward=True)
    w = LossWeights.from_options(StylizeOptions())
    g = torch.Generator().manual_seed(0)
    content = torch.rand((batch, 3, side, side), generator=g)
    style = torch.rand((batch, 3, side, side), generator=g)
    with torch.no_grad():
        feats = ctx.features(content, w.content_layers)
        targets = {
            n: style_statistics(f, w.kind) for n, f in ctx.features(style, w.style_layers).items()
        }
    return ctx, GatysLoss(net, [w] * batch, feats, targets), content


def profile_run(batch: int, steps: int, side: int, weights: Path, optimizer: str) -> dict[str, Any]:
    from engine.optimize import Lane, optimize
    from engine.options import Tuning

    ctx, loss, start = problem(batch, side, weights)
    lanes = [Lane(steps, 0.0, None, lambda *a: None) for _ in range(batch)]
    began = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        outcomes = optimize(
            ctx, loss, start, lanes, labelled_factory(optimizer), Tuning(progress_every=8)
        )
    seconds = time.perf_counter() - began
    ops, syncs = classify(list(prof.events()))
    ran = max(o.steps_run for o in outcomes)

    def window(first: int, last: int) -> dict[str, Any]:
        n = last - first
        counts = Counter(b for s, b in ops if first <= s < last)
        reads = Counter(k for s, k in syncs if first <= s < last)
        return {
            "steps": n,
            "dispatches_per_step": round(sum(counts.values()) / n, 1),
            "by_bucket": {b: round(counts[b] / n, 1) for b in BUCKETS},
            "host_syncs_per_step": round(sum(reads.values()) / n, 3),
            "host_syncs_by_kind": dict(reads),
        }

    return {
        "batch": batch,
        "steps_run": ran,
        "evaluations": max(o.evaluations for o in outcomes),
        "profiled_seconds": round(seconds, 1),
        "run": window(0, ran),
        "empty": window(0, min(8, ran)),
        "full": window(max(0, ran - 8), ran),
    }


def random_weights(path: Path) -> Path:
    """Seeded random VGG19 features, saved and loaded through the real loader (as the tests)."""
    if not path.exists():
        from torchvision import models

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1234)
            features = models.vgg19(weights=None).features
        torch.save(features.state_dict(), path)
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batches", default="1,4,16")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--side", type=int, default=32)
    p.add_argument("--optimizer", default="lbfgs")
    p.add_argument("--weights", type=Path, default=Path("/tmp/orsay-random-vgg19-features.pth"))
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    instrument()
    weights = random_weights(args.weights)
    results = []
    for batch in (int(b) for b in args.batches.split(",")):
        r = profile_run(batch, args.steps, args.side, weights, args.optimizer)
        results.append(r)
        for name in ("run", "empty", "full"):
            w = r[name]
            parts = " ".join(f"{b} {v:g}" for b, v in w["by_bucket"].items())
            print(
                f"B={batch:<3} {name:<5} {w['dispatches_per_step']:7.1f} ops/step ({parts}); "
                f"host syncs/step {w['host_syncs_per_step']:.3f} {w['host_syncs_by_kind']}"
            )
        print(
            f"B={batch:<3} {r['steps_run']} steps, {r['evaluations']} evaluations, "
            f"{r['profiled_seconds']} s under the profiler"
        )
    if args.json:
        args.json.write_text(json.dumps({"side": args.side, "runs": results}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
