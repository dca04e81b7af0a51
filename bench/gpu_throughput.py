"""Throughput of a warm worker: per-job latency, jobs per minute, and the share of the chip used.

    python3 bench/gpu_throughput.py --device cuda --json $OUT/throughput.json
    .venv/bin/python bench/gpu_throughput.py --device cpu --sizes 128,256 --batches 1,2

A warm worker: `engine.style_transfer.warm_up()` runs first and one job is painted and thrown away,
so loading and first-use kernel setup are not timed. Then for each (size, batch) a batch of B jobs
(the same photo and painting, different seeds; balanced preset, early stop off so every job runs its
full steps) is painted with `stylize_batch`. Random VGG19 weights: throughput does not depend on
trained weights.

chip_share: the FLOP/s the painting achieved against those of a plain forward + input-gradient
backward of the same network at the same batch shape, measured in the same run; since each loss
evaluation is one such pass, it is (evaluations x plain pass seconds) / painting seconds.
first_preview_s: from the start of the batch to the first preview event of its first job.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from engine.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
SHARED = load_settings().shared_dir  # ORSAY_SHARED, else <repo>/../shared
LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--sizes", default="256,512,1024")
    p.add_argument("--batches", default="1,2,4,8,16")
    p.add_argument("--model", default="vgg19")
    p.add_argument("--quality", default="balanced")
    p.add_argument("--steps", type=int, default=None, help="override the preset's steps")
    p.add_argument("--precision", default="auto")
    p.add_argument("--content", default=str(SHARED / "photos" / "chelsea-the-cat.png"))
    p.add_argument("--style", default=str(SHARED / "artworks" / "van-gogh-starry-night.jpg"))
    p.add_argument("--json", default=None, help="write one row per (device, size, batch)")
    return p.parse_args(argv)


def plain_pass_seconds(ctx: Any, shape: tuple[int, ...], repeats: int = 3) -> float:
    """Seconds of one forward + input-gradient backward of the painter's network at `shape`."""
    import torch

    x = torch.rand(shape, device=ctx.device)
    times = []
    for _ in range(repeats + 1):
        sync(ctx.device)
        began = time.perf_counter()
        xs = x.detach().requires_grad_(True)
        feats = ctx.features(xs, LAYERS)
        torch.autograd.grad(torch.stack([f.float().sum() for f in feats.values()]).sum(), xs)
        sync(ctx.device)
        times.append(time.perf_counter() - began)
    return min(times[1:])  # the first repeat sets up kernels


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_batch(args: argparse.Namespace, size: int, batch: int, images: Any) -> dict[str, Any]:
    from engine.options import BatchJob, ProgressEvent, StyleInput, StylizeOptions, Tuning
    from engine.style_transfer import stylize_batch

    content, style = images
    first_preview: list[float] = []
    began = time.perf_counter()

    def on_progress(event: ProgressEvent) -> None:
        if event.preview is not None and not first_preview:
            first_preview.append(time.perf_counter() - began)

    options = StylizeOptions(
        size=size,
        model=args.model,
        weights="random",
        device=args.device,
        quality=args.quality,
        steps=args.steps,
        precision=args.precision,
        style_cache=False,
        tuning=Tuning(tolerance=0.0),
    )
    jobs = [
        BatchJob(
            content,
            [StyleInput(style)],
            StylizeOptions(**{**options.__dict__, "seed": seed}),
            progress=on_progress if seed == 0 else None,
        )
        for seed in range(batch)
    ]
    results = stylize_batch(jobs)
    wall = time.perf_counter() - began
    for result in results:
        if isinstance(result, BaseException):
            raise result
    reports = [r.report for r in results if not isinstance(r, BaseException)]
    evaluations = max(sum(s["evaluations"] for s in rep["scales"]) for rep in reports)
    shape = (batch, 3, reports[0]["output_size"][1], reports[0]["output_size"][0])
    return {
        "wall": wall,
        "evaluations": evaluations,
        "shape": shape,
        "first_preview_s": first_preview[0] if first_preview else None,
        "precision": reports[0]["precision"],
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from PIL import Image

    from engine import device as devices
    from engine.context import Context
    from engine.model import load_features
    from engine.style_transfer import warm_up

    if args.device == "cpu":
        torch.set_num_threads(max(1, os.cpu_count() or 1))
    warm_up(args.model, "random", args.device)
    images = (Image.open(args.content).convert("RGB"), Image.open(args.style).convert("RGB"))
    sizes = [int(v) for v in args.sizes.split(",")]
    batches = [int(v) for v in args.batches.split(",")]
    run_batch(args, sizes[0], 1, images)  # the first job after start is not timed
    device = devices.pick_device(args.device)
    rows = []
    for size in sizes:
        for batch in batches:
            got = run_batch(args, size, batch, images)
            net = load_features(args.model, "random", device)
            ctx = Context(net, device, got["precision"])
            plain = plain_pass_seconds(ctx, got["shape"])
            row = {
                "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(),
                "size": size,
                "batch": batch,
                "per_job_s": round(got["wall"] / batch, 3),
                "jobs_per_min": round(60 * batch / got["wall"], 2),
                "chip_share": round(got["evaluations"] * plain / got["wall"], 3),
                "first_preview_s": None
                if got["first_preview_s"] is None
                else round(got["first_preview_s"], 3),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())
