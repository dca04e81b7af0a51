"""The default settings vs. the classic Gatys recipe, same inputs/weights/machine.

    .venv/bin/python bench/engine_speed.py            # 384 px, trained VGG16 fixture
    .venv/bin/python bench/engine_speed.py --size 256 --classic-steps 100

Three runs, each in its own subprocess so its peak RSS is its own: `default` (quality preset),
`classic` (one scale, 300 fp32 L-BFGS steps from the photo, with the engine's own box-aware
L-BFGS) and `textbook` (the same recipe with torch.optim.LBFGS and a clamp after each step, as
the PyTorch tutorial and most Gatys code run it). All use the same loss weights; each final
total loss is evaluated by the engine at the output resolution in fp32. Target (issue 2): the
default reaches an equal or lower final loss in <= 1/4 of the classic run's wall time on CPU;
both classic variants are reported. Prints a table and writes JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from engine.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
SHARED = load_settings().shared_dir  # ORSAY_SHARED, else <repo>/../shared
SIDES = ("default", "classic", "textbook")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--model", default="vgg16")
    p.add_argument("--weights", default=str(SHARED / "weights" / "hed-vgg16-features.pth"))
    p.add_argument("--content", default=str(SHARED / "photos" / "chelsea-the-cat.png"))
    p.add_argument("--style", default=str(SHARED / "artworks" / "van-gogh-starry-night.jpg"))
    p.add_argument("--quality", default="balanced", help="default run's quality preset")
    p.add_argument("--precision", default="auto", help="default run's precision")
    p.add_argument("--scales", default="", help="tuning: override the default run's scales")
    p.add_argument("--classic-steps", type=int, default=300)
    p.add_argument("--classic-precision", default="fp32", help="the classic baseline is fp32")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", choices=SIDES, help="run one side in-process")
    p.add_argument("--skip-classic", action="store_true", help="tuning: run the default only")
    p.add_argument("--tuning", default="{}", help="JSON for StylizeOptions.tuning fields")
    p.add_argument("--save-dir", default="/tmp", help="where the two output PNGs go")
    p.add_argument("--json", default="/tmp/orsay-engine-speed.json")
    return p.parse_args(argv)


def textbook_lbfgs(x: Any, evaluate: Any, tuning: Any) -> Any:
    """torch.optim.LBFGS with a fixed unit step and a clamp after each step, as the PyTorch
    tutorial and most Gatys code run it; one job only. An engine.optimize.OptimizerFactory."""
    import torch

    pixels = x.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([pixels], lr=1.0, max_iter=1, history_size=tuning.lbfgs_history)
    last: list[Any] = []

    class Textbook:
        def step(self) -> Any:
            def closure() -> Any:
                value, grad = evaluate(pixels)
                pixels.grad = grad.reshape(pixels.shape)
                last[:] = [value.detach()]
                return value.sum()

            optimizer.step(closure)
            with torch.no_grad():
                pixels.clamp_(0, 1)
            return last[0]

        def keep(self, rows: Any) -> None:
            if list(rows) != [0]:
                raise ValueError("the textbook optimizer paints one job")

    return Textbook()


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """One stylize call in this process; returns the figures the comparison needs."""
    import torch
    from PIL import Image

    from engine.options import BatchJob, ProgressEvent, StyleInput, StylizeOptions, Tuning
    from engine.style_transfer import stylize_batch

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    tuning = Tuning(**json.loads(args.tuning)) if args.only == "default" else Tuning()
    common: dict[str, Any] = {
        "size": args.size,
        "model": args.model,
        "weights": args.weights,
        "seed": args.seed,
        "device": args.device,
        "style_cache": False,
        "tuning": tuning,
    }
    if args.only in ("classic", "textbook"):
        options = StylizeOptions(
            **common,
            scales=(args.size,),
            steps=args.classic_steps,
            optimizer="lbfgs",
            init="content",
            precision=args.classic_precision,
        )
    else:
        scales = tuple(int(v) for v in args.scales.split(",")) if args.scales else None
        options = StylizeOptions(
            **common, quality=args.quality, precision=args.precision, scales=scales
        )
    curve: list[tuple[int, int, float, float]] = []
    began = time.perf_counter()

    def on_progress(event: ProgressEvent) -> None:
        if event.stage == "optimizing" and event.loss is not None and event.preview is None:
            curve.append((event.size, event.step, time.perf_counter() - began, event.loss))

    content = Image.open(args.content)
    style = Image.open(args.style)
    optimizer = textbook_lbfgs if args.only == "textbook" else None
    job = BatchJob(content, [StyleInput(style)], options, progress=on_progress)
    (result,) = stylize_batch([job], optimizer=optimizer)
    if isinstance(result, BaseException):
        raise result
    out = Path(args.save_dir) / f"orsay-bench-{args.only}-{args.size}.png"
    result.image.save(out)
    report = result.report
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "run": args.only,
        "wall_s": report["wall_s"],
        "process_cpu_s": round(usage.ru_utime + usage.ru_stime, 1),  # robust to a busy host
        "final_losses": report["final_losses"],
        "peak_rss_bytes": report["peak_memory"]["bytes"],
        "precision": report["precision"],
        "scales": [
            {k: s[k] for k in ("size", "steps_run", "steps_planned", "seconds")}
            for s in report["scales"]
        ],
        "loss_weights": report["loss_weights"],
        "image": str(out),
        "curve": curve,
    }


def spawn(args: argparse.Namespace, which: str) -> dict[str, Any]:
    argv = [a for a in sys.argv[1:] if a != "--skip-classic"]
    cmd = [sys.executable, __file__, *argv, "--only", which]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{which} run failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def classic_time_to_reach(classic: dict[str, Any], loss: float) -> float | None:
    """Seconds the classic run needed before its (fp32, full-size) loss fell to `loss`."""
    for _size, _step, seconds, value in classic["curve"]:
        if value <= loss:
            return float(seconds)
    return None


def compare(default: dict[str, Any], classic: dict[str, Any]) -> dict[str, Any]:
    d_loss, c_loss = default["final_losses"]["total"], classic["final_losses"]["total"]
    return {
        "time_ratio": default["wall_s"] / classic["wall_s"],
        "cpu_time_ratio": default["process_cpu_s"] / classic["process_cpu_s"],
        "loss_ratio": d_loss / c_loss,
        "s_to_reach_default_loss": classic_time_to_reach(classic, d_loss),
        "target_met": default["wall_s"] <= classic["wall_s"] / 4 and d_loss <= c_loss,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.only:
        print(json.dumps(run_one(args)))
        return 0
    results: dict[str, Any] = {"size": args.size, "model": args.model, "device": args.device}
    for side in SIDES[:1] if args.skip_classic else SIDES:
        run = results[side] = spawn(args, side)
        total = run["final_losses"]["total"]
        rss = run["peak_rss_bytes"] / 2**20
        print(
            f"{side}: {run['wall_s']:.1f} s (cpu {run['process_cpu_s']} s), loss {total:.5g}, "
            f"peak RSS {rss:.0f} MiB"
        )
        for s in run["scales"]:
            steps = f"{s['steps_run']}/{s['steps_planned']}"
            print(f"  {s['size']:>5} px  {steps:>7}  {s['seconds']:7.1f} s")
    for side in SIDES[1:]:
        if side in results:
            results[f"vs_{side}"] = figures = compare(results["default"], results[side])
            print(f"default vs {side}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
