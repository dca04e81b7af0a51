"""Big prints: peak memory and time of painting in tiles (engine.tiling) against in one piece.

    nice -n 5 .venv/bin/python bench/big_prints.py --json bench/results/big_prints_cpu.json
    python3 bench/big_prints.py --device cuda --cases 4096:0,4096:1024,8192:2048 --steps 20

Each case SIZE:TILE is one `orsay stylize --size SIZE --tile TILE` (TILE 0: never tile, auto:
the default from the device's memory) in a fresh subprocess, so its peak memory is its own: the
process's peak RSS on a CPU, `torch.cuda.max_memory_allocated` on CUDA (both from the run's
`--report`). Every scale of the size's schedule runs `--steps` steps with early stop off, so
cases of one size do the same work: the ratios (tiled over untiled) are what the bench is for,
not the absolute times of a full-quality run. The cat and The Starry Night, seed 0, the trained
VGG16 fixture when it is there (random VGG19 otherwise: time and memory do not depend on the
weights). Cases run in the order given; on a shared machine interleave repeats (`--repeat`).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from engine.settings import child_env, load_settings

REPO = Path(__file__).resolve().parent.parent
SHARED = load_settings().shared_dir  # ORSAY_SHARED, else <repo>/../shared
FIXTURE = SHARED / "weights" / "hed-vgg16-features.pth"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", default="1024:0,1024:256,2048:512", help="SIZE:TILE,...")
    p.add_argument("--steps", type=int, default=8, help="steps at every scale")
    p.add_argument("--repeat", type=int, default=1, help="rounds over all cases, interleaved")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="auto")
    p.add_argument("--model", default=None, help="default: vgg16 with the fixture, else vgg19")
    p.add_argument("--weights", default=None, help="default: the fixture, else random")
    p.add_argument("--content", default=str(SHARED / "photos" / "chelsea-the-cat.png"))
    p.add_argument("--style", default=str(SHARED / "artworks" / "van-gogh-starry-night.jpg"))
    p.add_argument("--keep", type=Path, default=None, help="keep the pictures in this folder")
    p.add_argument("--json", type=Path, default=None, help="write one row per case and round")
    return p.parse_args(argv)


def run_case(args: argparse.Namespace, size: int, tile: str, folder: Path) -> dict[str, Any]:
    """One `orsay stylize` in its own process; its report's figures."""
    model = args.model or ("vgg16" if FIXTURE.is_file() else "vgg19")
    weights = args.weights or (str(FIXTURE) if FIXTURE.is_file() else "random")
    name = f"{size}-tile{tile}"
    report = folder / f"{name}.json"
    command = [
        sys.executable, "-m", "orsay", "stylize", args.content,
        "--style", args.style, "-o", str(folder / f"{name}.png"),
        "--size", str(size), "--steps", str(args.steps), "--seed", "0",
        "--model", model, "--weights", weights, "--device", args.device,
        "--precision", args.precision, "--report", str(report), "-q",
    ]  # fmt: skip
    if tile != "auto":
        command += ["--tile", tile]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, cwd=REPO, env=child_env(PYTHONPATH=str(REPO)))
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    run = json.loads(report.read_text())
    inner = run["report"]
    peak = inner["peak_memory"]
    return {
        "size": size,
        "tile": tile,
        "tile_used": inner["tile"],
        "output": run["output_size"],
        "scales": [
            {k: s[k] for k in ("size", "tiles", "steps_run", "evaluations", "seconds")}
            for s in inner["scales"]
        ],
        "seconds": inner["wall_s"],
        "cpu_seconds": round(cpu, 1),  # the child's user + system time, all threads
        "optimize_seconds": round(sum(s["seconds"] for s in inner["scales"]), 2),
        "peak_kind": peak["kind"],
        "peak_mib": round(peak["bytes"] / 2**20),
        "final_loss": inner["final_losses"]["total"],
        "model": model,
        "precision": inner["precision"],
        "steps_per_scale": args.steps,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cases = []
    for part in args.cases.split(","):
        size, _, tile = part.partition(":")
        cases.append((int(size), tile or "auto"))
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for round_ in range(args.repeat):
            for size, tile in cases:
                row = run_case(args, size, tile, folder) | {"round": round_}
                rows.append(row)
                print(
                    f"{size:5d} px tile {tile:>4s} ({row['tile_used']}): "
                    f"{row['seconds']:7.1f} s (optimizing {row['optimize_seconds']:.1f} s, "
                    f"CPU {row['cpu_seconds']:.0f} s), "
                    f"peak {row['peak_mib']} MiB ({row['peak_kind']}), "
                    f"tiles per scale {[s['tiles'] for s in row['scales']]}",
                    flush=True,
                )
    for size in sorted({s for s, _ in cases}):
        whole = [r for r in rows if r["size"] == size and r["tile"] == "0"]
        for row in (r for r in rows if r["size"] == size and r["tile"] != "0"):
            if whole:
                base = min(whole, key=lambda r: r["seconds"])
                time_ratio = row["seconds"] / base["seconds"]
                cpu_ratio = row["cpu_seconds"] / base["cpu_seconds"]
                memory_ratio = row["peak_mib"] / base["peak_mib"]
                print(
                    f"{size} px tile {row['tile']} vs untiled: time ×{time_ratio:.2f} "
                    f"(CPU time ×{cpu_ratio:.2f}), peak memory ×{memory_ratio:.2f}"
                )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
