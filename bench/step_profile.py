"""What one optimizer step dispatches and where it waits for the host, counted on the CPU.

    .venv/bin/python bench/step_profile.py                  # B = 1, 4, 16; < 2 min on 2 cores
    .venv/bin/python bench/step_profile.py --batches 1 --json /tmp/steps.json
    .venv/bin/python bench/step_profile.py --device cuda    # the same counts on a GPU, timed

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
sequence number. Windows: `run` (every step of a 120-step run, averaged; B = 1 by default,
`--whole` for more), `empty` (the first 8 steps: the curvature memory nearly empty) and `full`
(the last 8 steps of the run, or of 64 steps for the other batch sizes: the memory full). Each
window runs under its own profiler, so the steps between them run at full speed.
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.observability.dispatches import buckets, host_reads, labelled  # noqa: E402

BUCKETS = ("network", "loss", "evaluate", "update", "loop")
FULL_BY = 64  # steps after which the default memory (50 pairs) has been full for 8 steps


def classify(events: list[Any]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(step, bucket) of every outermost aten:: event and (step, kind) of every host read.

    `step` is the 0-based index of the optimizer step the event happened in or after (the
    loop's work after step k counts towards step k)."""
    starts = sorted(e.time_range.start for e in events if e.name == "orsay.step")

    def step_of(event: Any) -> int:
        return max(bisect.bisect_right(starts, event.time_range.start) - 1, 0)

    ops = []
    for event, bucket in buckets(events, ("network", "loss", "evaluate", "step"), "loop"):
        ops.append((step_of(event), "update" if bucket == "step" else bucket))
    syncs = []
    for event in events:
        kind = host_reads([event])
        if kind:
            syncs.append((step_of(event), next(iter(kind))))
    return ops, syncs


def instrument() -> None:
    """Label the network and loss calls so their ops (and their backward) can be told apart."""
    from engine import context, losses

    def wrap(cls: type, method: str, name: str) -> None:
        original = getattr(cls, method)

        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            with labelled(name):
                return original(self, *args, **kwargs)

        setattr(cls, method, wrapped)

    wrap(context.Context, "features", "network")
    wrap(losses.GatysLoss, "parts", "loss")  # the autograd path (Wasserstein style losses)
    wrap(losses.GatysLoss, "_gram_value_and_feature_grads", "loss")


def labelled_factory(name: str, before_step: Callable[[], None]) -> Callable[..., Any]:
    """engine.optimize's optimizer factory `name`, with its steps and evaluations labelled and
    `before_step` called as each step begins."""
    from engine.optimize import make_optimizer

    inner = make_optimizer(name)

    def factory(x: torch.Tensor, evaluate: Any, tuning: Any) -> Any:
        def labelled_evaluate(*args: Any) -> Any:
            with labelled("evaluate"):
                return evaluate(*args)

        opt = inner(x, labelled_evaluate, tuning)
        step = opt.step

        def labelled_step() -> Any:
            before_step()
            with labelled("step"):
                return step()

        opt.step = labelled_step
        return opt

    return factory


def problem(
    batch: int, side: int, weights: Path, device: str = "cpu", precision: str = "fp32"
) -> tuple[Any, Any, torch.Tensor]:
    from engine.context import Context
    from engine.losses import GatysLoss, LossWeights, style_statistics
    from engine.model import load_features
    from engine.options import StylizeOptions

    net = load_features("vgg19", str(weights), device)
    ctx = Context(net, torch.device(device), precision, one_forward=True)
    w = LossWeights.from_options(StylizeOptions())
    g = torch.Generator().manual_seed(0)
    content = torch.rand((batch, 3, side, side), generator=g).to(device)
    style = torch.rand((batch, 3, side, side), generator=g).to(device)
    with torch.no_grad():
        feats = ctx.features(content, w.content_layers)
        targets = {
            n: style_statistics(f, w.kind) for n, f in ctx.features(style, w.style_layers).items()
        }
    return ctx, GatysLoss(net, [w] * batch, feats, targets), content


class Windows:
    """Profiles chosen spans of steps of one run, each in a profiler of its own (so the steps
    between them run at full speed): span (a, b) records from the start of step a to the start
    of step b (the loop's work after step b - 1 included), or to the end of the run."""

    def __init__(self, spans: list[tuple[int, int]]) -> None:
        self.spans, self.step = spans, 0
        self.active: tuple[tuple[int, int], Any] | None = None
        self.events: dict[tuple[int, int], list[Any]] = {}

    def before_step(self) -> None:
        self.step += 1
        if self.active is not None and self.active[0][1] == self.step:
            self.close()
        for span in self.spans:
            if span[0] == self.step:
                prof = profile(activities=[ProfilerActivity.CPU])
                prof.start()
                self.active = (span, prof)

    def close(self) -> None:
        if self.active is not None:
            span, prof = self.active
            prof.stop()
            self.events[span] = list(prof.events())
            self.active = None


def figures(span: tuple[int, int], events: list[Any]) -> dict[str, Any]:
    """Dispatches and host reads per step over one span of steps."""
    ops, syncs = classify(events)
    n = span[1] - span[0]
    counts = Counter(b for _, b in ops)
    reads = Counter(k for _, k in syncs)
    return {
        "steps": f"{span[0]}-{span[1] - 1}",
        "dispatches_per_step": round(sum(counts.values()) / n, 1),
        "by_bucket": {b: round(counts[b] / n, 1) for b in BUCKETS},
        "host_syncs_per_step": round(sum(reads.values()) / n, 3),
        "host_syncs_by_kind": dict(reads),
    }


def profile_run(
    batch: int,
    steps: int,
    side: int,
    weights: Path,
    optimizer: str,
    whole: bool,
    device: str = "cpu",
    precision: str = "fp32",
) -> dict[str, Any]:
    """One run of `steps` steps; `empty` (its first 8 steps, the memory nearly empty), `full`
    (its last 8, the memory full) and, if `whole`, `run` (every step)."""
    from engine.optimize import Lane, optimize
    from engine.options import Tuning

    ctx, loss, start = problem(batch, side, weights, device, precision)
    lanes = [Lane(steps, 0.0, None, lambda *a: None) for _ in range(batch)]
    named = {"empty": (1, 9), "full": (steps - 7, steps + 1)}
    if whole:
        named = {"run": (1, steps + 1), **named}
        spans = [named["run"]]  # one profiler; the other windows are cut from it
    else:
        spans = [named["empty"], named["full"]]
    windows = Windows(spans)
    began = time.perf_counter()
    factory = labelled_factory(optimizer, windows.before_step)
    outcomes = optimize(ctx, loss, start, lanes, factory, Tuning(progress_every=8))
    windows.close()
    seconds = time.perf_counter() - began
    result: dict[str, Any] = {
        "batch": batch,
        "steps_run": max(o.steps_run for o in outcomes),
        "evaluations": max(o.evaluations for o in outcomes),
        "seconds": round(seconds, 1),
    }
    for name, span in named.items():
        if span in windows.events:
            events = windows.events[span]
        else:  # cut from the whole run: the events that began inside the span's steps
            events = cut(windows.events[named["run"]], span)
        result[name] = figures(span, events)
    return result


def cut(events: list[Any], span: tuple[int, int]) -> list[Any]:
    """The events from the start of step span[0] to the start of step span[1] (1-based)."""
    starts = sorted(e.time_range.start for e in events if e.name == "orsay.step")
    lo = starts[span[0] - 1]
    hi = starts[span[1] - 1] if span[1] - 1 < len(starts) else float("inf")
    return [e for e in events if lo <= e.time_range.start < hi]


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
    p.add_argument("--whole", default="1", help="batch sizes profiled over every step")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--side", type=int, default=32)
    p.add_argument("--optimizer", default="lbfgs")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--weights", type=Path, default=Path("/tmp/orsay-random-vgg19-features.pth"))
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    instrument()
    weights = random_weights(args.weights)
    results = []
    for batch in (int(b) for b in args.batches.split(",")):
        whole = str(batch) in args.whole.split(",")
        # A batch profiled in windows only needs its memory full by its last 8 steps: 64 steps
        # (history 50 + 14) instead of 120 keep the whole bench under 2 minutes on 2 cores.
        steps = args.steps if whole else min(args.steps, FULL_BY)
        r = profile_run(
            batch, steps, args.side, weights, args.optimizer, whole, args.device, args.precision
        )
        results.append(r)
        for name in ("run", "empty", "full"):
            if name not in r:
                continue
            w = r[name]
            parts = " ".join(f"{b} {v:g}" for b, v in w["by_bucket"].items())
            print(
                f"B={batch:<3} {name:<5} {w['dispatches_per_step']:7.1f} ops/step ({parts}); "
                f"host syncs/step {w['host_syncs_per_step']:.3f} {w['host_syncs_by_kind']}"
            )
        print(
            f"B={batch:<3} {r['steps_run']} steps, {r['evaluations']} evaluations, {r['seconds']} s"
        )
    if args.json:
        figures = {"side": args.side, "device": args.device, "precision": args.precision}
        args.json.write_text(json.dumps({**figures, "runs": results}, indent=2))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
