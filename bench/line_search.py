"""How often the L-BFGS line search halves a step at real sizes, in fp32 and bf16.

    .venv/bin/python bench/line_search.py                     # 256 px fp32, 256 and 384 px bf16
    .venv/bin/python bench/line_search.py --runs 384:bf16 --steps 60

At 32 px with random weights in bf16, the old line search halved at every step from about step
45 (580 evaluations for 120 steps against 121 in fp32): bf16 rounding in the loss is then larger
than the decrease a step can make. This runs the real painter (the trained VGG16 fixture, cat +
Starry Night, one scale, early stop off, no first look) and counts, per run, the steps whose
trial point failed the Armijo test (since engine.lbfgs spreads a line search over steps, each
halving costs one step). It reads the device back after every step to count, so its times are
not the painter's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from engine.settings import load_settings  # noqa: E402

SHARED = load_settings().shared_dir


def run(side: int, precision: str, steps: int, weights: str) -> dict[str, Any]:
    import torch
    from PIL import Image

    from engine import lbfgs
    from engine.options import StyleInput, StylizeOptions, Tuning
    from engine.style_transfer import stylize

    halved: list[int] = []
    update = lbfgs.BatchBoxLBFGS.update

    def counting(self: Any, *args: Any) -> Any:
        value = update(self, *args)
        halved.append(int((self.tries > 0).sum()))
        return value

    lbfgs.BatchBoxLBFGS.update = counting  # type: ignore[method-assign]
    try:
        options = StylizeOptions(
            size=side,
            scales=(side,),
            steps=steps,
            model="vgg16",
            weights=weights,
            precision=precision,  # type: ignore[arg-type]
            device="cpu",
            seed=0,
            style_cache=False,
            tuning=Tuning(tolerance=0.0, first_look_steps=0),
        )
        torch.set_num_threads(2)
        began = time.perf_counter()
        content = Image.open(SHARED / "photos" / "chelsea-the-cat.png")
        style = Image.open(SHARED / "artworks" / "van-gogh-starry-night.jpg")
        result = stylize(content, [StyleInput(style)], options)
    finally:
        lbfgs.BatchBoxLBFGS.update = update  # type: ignore[method-assign]
    return {
        "side": side,
        "precision": precision,
        "steps": len(halved),
        "halving_steps": sum(halved),
        "final_loss": result.report["final_losses"]["total"],
        "seconds": round(time.perf_counter() - began, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", default="256:fp32,256:bf16,384:bf16", help="side:precision,...")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--weights", default=str(SHARED / "weights" / "hed-vgg16-features.pth"))
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    rows = []
    for spec in args.runs.split(","):
        side, precision = spec.split(":")
        row = run(int(side), precision, args.steps, args.weights)
        rows.append(row)
        print(
            f"{row['side']} px {row['precision']}: {row['halving_steps']} of {row['steps']} steps "
            f"halved, final loss {row['final_loss']:.6g}, {row['seconds']} s"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
