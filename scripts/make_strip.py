"""Make docs/strip.jpg, the README's before/after strip, with Orsay's own engine.

Rows are examples; columns are the photo, the painting, and what `engine.style_transfer.stylize`
made of them. Provenance (model, weights, size, seconds) goes into the JPEG comment and on stdout,
so the README can say which weights made the picture:

    .venv/bin/python scripts/make_strip.py --model vgg16 \
        --weights ../shared/weights/hed-vgg16-features.pth --size 256
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from PIL import Image, ImageOps

from engine.options import StyleInput, StylizeOptions
from engine.settings import load_settings
from engine.style_transfer import stylize

ROOT = Path(__file__).resolve().parents[1]
PAIRS = (
    ("chelsea-the-cat.png", "van-gogh-starry-night.jpg"),
    ("golden-gate-bridge-fog.jpg", "hokusai-great-wave-off-kanagawa.jpg"),
    ("dahlia-flower.jpg", "kandinsky-composition-vii.jpg"),
)
GAP = 6


def shared_dir() -> Path:
    path = load_settings().shared_dir  # ORSAY_SHARED, else <repo>/../shared
    if not (path / "photos").is_dir():
        raise SystemExit(f"shared data not found at {path} (set ORSAY_SHARED)")
    return path


def cell(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Fit `image` to the result's cell: center-cropped to its aspect, never squashed."""
    return ImageOps.fit(image.convert("RGB"), size, Image.Resampling.LANCZOS)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg16", choices=("vgg16", "vgg19"))
    parser.add_argument("--weights", default=None, help="default: ../shared VGG16 fixture")
    parser.add_argument("--size", type=int, default=256, help="long side of each result")
    parser.add_argument("--quality", default="balanced", choices=("fast", "balanced", "high"))
    parser.add_argument("--strength", type=float, default=0.35)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "docs" / "strip.jpg")
    args = parser.parse_args()
    shared = shared_dir()
    weights = args.weights or str(shared / "weights" / "hed-vgg16-features.pth")

    rows: list[list[Image.Image]] = []
    started = time.perf_counter()
    for photo_name, painting_name in PAIRS:
        photo = ImageOps.exif_transpose(Image.open(shared / "photos" / photo_name))
        painting = Image.open(shared / "artworks" / painting_name)
        options = StylizeOptions(
            size=args.size,
            quality=args.quality,
            strength=args.strength,
            model=args.model,
            weights=weights,
            seed=args.seed,
        )
        t0 = time.perf_counter()
        result = stylize(photo, [StyleInput(painting, cache_key=painting_name)], options)
        print(f"{photo_name} x {painting_name}: {time.perf_counter() - t0:.0f} s", flush=True)
        size = result.image.size
        rows.append([cell(photo, size), cell(painting, size), result.image.convert("RGB")])

    height_total = sum(row[0].height for row in rows) + GAP * (len(rows) - 1)
    width_total = max(sum(c.width for c in row) + GAP * (len(row) - 1) for row in rows)
    strip = Image.new("RGB", (width_total, height_total), "white")
    y = 0
    for row in rows:
        x = 0
        for image in row:
            strip.paste(image, (x, y))
            x += image.width + GAP
        y += row[0].height + GAP

    seconds = time.perf_counter() - started
    provenance = (
        f"Orsay strip: model={args.model} weights={Path(weights).name} size={args.size} "
        f"quality={args.quality} strength={args.strength} seed={args.seed} total={seconds:.0f}s"
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    strip.save(args.out, "JPEG", quality=85, optimize=True, comment=provenance.encode())
    print(provenance)
    print(f"wrote {args.out} ({args.out.stat().st_size // 1024} KB, {strip.width}x{strip.height})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
