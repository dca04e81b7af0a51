"""The big-print picture in the README: one print with `orsay stylize`, and the figure beside it.

    nice -n 5 .venv/bin/python scripts/make_print.py            # docs/print.jpg (2048 px print)
    .venv/bin/python scripts/make_print.py --size 4096 --device cuda --out /tmp/print4k.jpg

Paints the city skyline (CC0) in the style of The Starry Night with the trained VGG16 fixture
(../shared/weights, `--model vgg16`), default quality, seed 0, as `orsay stylize --size SIZE
--tile TILE` in its own process (so its peak memory is its own), keeps the print (PNG) and its
run report next to the figure, and draws the figure: the whole print scaled down on the left,
a 1:1 crop of it on the right (the crop's place outlined on the left). Prints the run's wall
time and peak memory for the README's caption.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from engine.settings import child_env, load_settings

REPO = Path(__file__).resolve().parent.parent
SHARED = load_settings().shared_dir


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    photo = SHARED / "photos" / "city-skyline-beach-sunset.jpg"
    p.add_argument("--photo", type=Path, default=photo)
    p.add_argument("--style", type=Path, default=SHARED / "artworks" / "van-gogh-starry-night.jpg")
    p.add_argument("--weights", type=Path, default=SHARED / "weights" / "hed-vgg16-features.pth")
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--tile", type=int, default=1024)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=REPO / "docs" / "print.jpg")
    p.add_argument("--keep", type=Path, default=Path("/tmp/orsay-print"), help="print + report")
    p.add_argument("--height", type=int, default=600, help="the figure's height in px")
    p.add_argument("--crop-at", default="0.62,0.30", help="the crop's centre, as fractions")
    p.add_argument("--reuse", action="store_true", help="draw the figure from a kept print")
    return p.parse_args(argv)


def paint(args: argparse.Namespace, picture: Path, report: Path) -> None:
    command = [
        sys.executable, "-m", "orsay", "stylize", str(args.photo),
        "--style", str(args.style), "-o", str(picture), "--size", str(args.size),
        "--tile", str(args.tile), "--model", "vgg16", "--weights", str(args.weights),
        "--device", args.device, "--seed", "0", "--no-style-cache", "--report", str(report),
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=REPO, env=child_env(PYTHONPATH=str(REPO)))


def figure(print_: Image.Image, height: int, centre: tuple[float, float]) -> Image.Image:
    """The print scaled to `height` beside a height × height crop of it at 1:1."""
    scale = height / print_.height
    whole = print_.resize((round(print_.width * scale), height), Image.Resampling.LANCZOS)
    cx, cy = round(centre[0] * print_.width), round(centre[1] * print_.height)
    left = min(max(0, cx - height // 2), print_.width - height)
    top = min(max(0, cy - height // 2), print_.height - height)
    crop = print_.crop((left, top, left + height, top + height))
    ImageDraw.Draw(whole).rectangle(
        [left * scale, top * scale, (left + height) * scale, (top + height) * scale],
        outline=(255, 255, 255),
        width=2,
    )
    out = Image.new("RGB", (whole.width + 8 + height, height), (255, 255, 255))
    out.paste(whole, (0, 0))
    out.paste(crop, (whole.width + 8, 0))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.keep.mkdir(parents=True, exist_ok=True)
    picture, report = args.keep / f"print-{args.size}.png", args.keep / f"print-{args.size}.json"
    if not args.reuse:
        paint(args, picture, report)
    run = json.loads(report.read_text())["report"]
    x, y = (float(v) for v in args.crop_at.split(","))
    out = figure(Image.open(picture).convert("RGB"), args.height, (x, y))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    out.save(args.out, quality=84, optimize=True, progressive=True)
    peak, (width, height) = run["peak_memory"], run["output_size"]
    print(
        f"{picture.name}: {width}×{height} in {run['wall_s']:.0f} s, "
        f"peak {peak['bytes'] / 2**30:.2f} GiB ({peak['kind']}), tile {run['tile']}, scales "
        f"{[(s['size'], s['tiles'], s['steps_run'], round(s['seconds'])) for s in run['scales']]}; "
        f"figure {args.out} {out.size[0]}×{out.size[1]}, {args.out.stat().st_size // 1024} KB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
