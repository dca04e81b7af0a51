"""Schedule tuning: run many engine configurations and record every loss evaluation.

    .venv/bin/python bench/schedule_sweep.py --device cpu --set smoke
    python3 bench/schedule_sweep.py --device cuda --set full --json $OUT/sweep.json

Why: the CPU target of bench/engine_speed.py is about time, and on CPU the time of a run is, to
a few percent, the number of loss evaluations at each size times the cost of one evaluation
there. A GPU runs the same evaluations ~100x faster, so many schedules can be tried there and
priced here: multiply each record's evaluations per width by the CPU seconds per evaluation
that `--measure-cpu` writes (2-core AVX-512 host: bf16 0.054 s at 128 px, 0.123 s at 222 px,
0.354 s at 384 px; fp32 0.742 s at 384 px). Each configuration's record holds every evaluation
as (width, loss in the run's precision) and the final fp32 loss at full size that the engine
reports.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from engine.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
SHARED = load_settings().shared_dir  # ORSAY_SHARED, else <repo>/../shared


def configurations(name: str, size: int) -> list[dict[str, Any]]:
    classic = {"scales": [size], "steps": 300, "precision": "fp32", "init": "content"}
    if name == "smoke":
        return [
            {**classic, "steps": 5},
            {"scales": [128, size], "steps_per_scale": [5, 5], "precision": "bf16"},
        ]
    default = {"scales": [128, 222, 384], "steps_per_scale": [100, 50, 200], "precision": "bf16"}
    if name == "round2":  # preconditioned L-BFGS; content boosts on the coarse scales
        # (The recorded round also tried carrying only part of the coarse stylization up, and
        # stronger content weights on coarse scales; both lost and their options are gone:
        # those rows are in bench/results/.)
        rows: list[dict[str, Any]] = [classic]
        rows += [{**classic, "tuning": {"precondition": c}} for c in (0.25, 0.5, 1.0)]
        rows += [
            {**classic, "tuning": {"precondition": 0.5, "precondition_levels": n}} for n in (2, 6)
        ]
        rows += [{**classic, "precision": "bf16", "tuning": {"precondition": 0.5}}]
        rows += [{**default, "tuning": {"precondition": c}} for c in (0.25, 0.5, 1.0)]
        rows += [
            {
                "scales": [256, 384],
                "steps_per_scale": [120, 200],
                "precision": "bf16",
                "tuning": {"precondition": 0.5},
            }
        ]
        return rows
    if name == "round3":  # the preconditioner with and without coarse scales, at any size
        half, quarter, third = size // 2, size // 4, size // 3
        ladders3: list[tuple[list[int], list[int]]] = [
            ([size], [300]),
            ([quarter, size], [100, 200]),
            ([half, size], [60, 200]),
            ([third, round(size / 1.73), size], [100, 50, 200]),
        ]
        rows = [classic]
        for (sides, steps), c in itertools.product(ladders3, (0.25, 0.5)):
            rows.append(
                {
                    "scales": sides,
                    "steps_per_scale": steps,
                    "precision": "bf16",
                    "tuning": {"precondition": c},
                }
            )
        rows += [
            {"scales": [size], "steps": 300, "precision": "bf16", "tuning": {"precondition": 1.0}},
            {
                "scales": [size],
                "steps": 300,
                "precision": "bf16",
                "tuning": {"precondition": 0.5, "lbfgs_history": 20},
            },
        ]
        return rows
    configs: list[dict[str, Any]] = [
        classic,
        {**classic, "precision": "bf16"},
        {**classic, "optimizer": "textbook"},
    ]
    for history in (10, 20, 100):
        configs.append({**classic, "tuning": {"lbfgs_history": history}})
    ladders: dict[tuple[int, ...], list[tuple[int, ...]]] = {
        (128, 222, 384): [(100, 50), (50, 25), (200, 100)],
        (128, 256, 384): [(100, 50), (50, 30)],
        (192, 384): [(50,), (100,), (200,)],
        (256, 384): [(30,), (60,), (120,)],
        (128, 192, 288, 384): [(100, 40, 30), (60, 30, 20)],
        (96, 192, 384): [(100, 50), (200, 60)],
        (128, 384): [(100,), (200,)],
    }
    for sides, step_sets in ladders.items():
        for coarse in step_sets:
            configs.append(
                {"scales": list(sides), "steps_per_scale": [*coarse, 200], "precision": "bf16"}
            )
    # (The recorded round also crossed these with content boosts on coarse scales, an option
    # that lost and is gone; those rows are in bench/results/.)
    for detail, precision in itertools.product((True, False), ("bf16", "fp32")):
        configs.append(
            {
                "scales": [128, 222, 384],
                "steps_per_scale": [100, 50, 200],
                "precision": precision,
                "tuning": {"detail_transfer": detail},
            }
        )
    for history in (10, 20, 100):
        configs.append(
            {
                "scales": [128, 222, 384],
                "steps_per_scale": [100, 50, 200],
                "precision": "bf16",
                "tuning": {"lbfgs_history": history},
            }
        )
    return configs


def run(config: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    from PIL import Image

    from bench.engine_speed import textbook_lbfgs
    from engine import losses
    from engine.options import BatchJob, StyleInput, StylizeOptions, Tuning
    from engine.style_transfer import stylize_batch

    evaluations: list[tuple[int, float]] = []
    original = losses.GatysLoss.parts

    def recording(self: Any, image: Any, features: Any) -> Any:
        parts = original(self, image, features)
        evaluations.extend((int(image.shape[-1]), v) for v in parts["total"].detach().tolist())
        return parts

    losses.GatysLoss.parts = recording  # type: ignore[method-assign]
    try:
        steps_per_scale = config.get("steps_per_scale")
        options = StylizeOptions(
            size=args.size,
            model="vgg16",
            weights=args.weights,
            seed=0,
            device=args.device,
            scales=tuple(config["scales"]),
            steps=config.get("steps") if steps_per_scale is None else None,
            precision=config["precision"],
            init=config.get("init", "content"),
            style_cache=False,
            tuning=Tuning(
                steps_per_scale=tuple(steps_per_scale) if steps_per_scale else None,
                **config.get("tuning", {}),
            ),
        )
        began = time.perf_counter()
        job = BatchJob(Image.open(args.content), [StyleInput(Image.open(args.style))], options)
        textbook = config.get("optimizer") == "textbook"
        (result,) = stylize_batch([job], optimizer=textbook_lbfgs if textbook else None)
        if isinstance(result, BaseException):
            raise result
        wall = time.perf_counter() - began
    finally:
        losses.GatysLoss.parts = original  # type: ignore[method-assign]
    return {
        "config": config,
        "wall_s": round(wall, 3),
        "final_losses": result.report["final_losses"],
        "scales": result.report["scales"],
        "evaluations": evaluations[:-1],  # the last one is the fp32 final evaluation
    }


def measure_cpu(args: argparse.Namespace) -> dict[str, float]:
    """Seconds per loss evaluation (forward + backward + optimizer step) at each width."""
    out: dict[str, float] = {}
    for precision in ("bf16", "fp32"):
        for side in (96, 128, 160, 192, 222, 256, 288, 384):
            config = {"scales": [side], "steps": 12, "precision": precision}
            args.size = side
            record = run(config, args)
            scale = record["scales"][0]
            count, seconds = scale["evaluations"], scale["seconds"]
            out[f"{precision}:{side}"] = seconds / count
            print(precision, side, f"{seconds / count:.4f} s/eval", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--set", default="full", choices=["full", "smoke", "round2", "round3"])
    p.add_argument("--weights", default=str(SHARED / "weights" / "hed-vgg16-features.pth"))
    p.add_argument("--content", default=str(SHARED / "photos" / "chelsea-the-cat.png"))
    p.add_argument("--style", default=str(SHARED / "artworks" / "van-gogh-starry-night.jpg"))
    p.add_argument("--measure-cpu", action="store_true", help="per-evaluation CPU seconds")
    p.add_argument("--json", default="/tmp/orsay-schedule-sweep.json")
    args = p.parse_args(argv)
    import torch

    if args.device == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    if args.measure_cpu:
        Path(args.json).write_text(json.dumps(measure_cpu(args), indent=2))
        return 0
    records = []
    for config in configurations(args.set, args.size):
        record = run(config, args)
        records.append(record)
        total = record["final_losses"]["total"]
        print(f"{record['wall_s']:7.2f} s  {total:.6f}  {json.dumps(config)}", flush=True)
        Path(args.json).write_text(json.dumps(records))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
