"""How the error of the tiled gradient (engine.tiling) falls with the tiles' margin.

    nice -n 5 .venv/bin/python bench/tile_margin.py --margins 0,16,32,48,64
    .venv/bin/python bench/tile_margin.py --model vgg19 --weights random

The cat at 512×341 px, recoloured in The Starry Night's palette (the painter's first start),
and the Gatys loss against The Starry Night at strength 0.5, in fp32: the tiled loss and
gradient in TILE px tiles with each margin, against the untiled ones. Per margin: tiles and
their area over the picture's, the loss's relative error, the gradient's relative error (L2)
and its worst column (the largest per-column mean |difference| over the mean |gradient|,
where a seam would show). engine.tiles.MARGINS quotes this table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from PIL import Image

from engine.context import Context
from engine.losses import GatysLoss, LossWeights, style_statistics
from engine.model import build_features
from engine.options import StylizeOptions
from engine.settings import load_settings
from engine.start import resize, start_image, to_tensor
from engine.tiling import TiledLoss, tiles_of

SHARED = load_settings().shared_dir
FIXTURE = SHARED / "weights" / "hed-vgg16-features.pth"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="vgg16")
    p.add_argument("--weights", default=str(FIXTURE))
    p.add_argument("--side", type=int, default=512)
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--margins", default="0,16,32,48,64")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    ctx = Context(build_features(args.model, args.weights), device, "fp32")
    weights = LossWeights.from_options(StylizeOptions())
    photo = Image.open(SHARED / "photos" / "chelsea-the-cat.png").convert("RGB")
    art = Image.open(SHARED / "artworks" / "van-gogh-starry-night.jpg").convert("RGB")
    content = to_tensor(resize(photo, args.side), device)
    with torch.no_grad():
        feats = ctx.features(content, weights.content_layers)
        style = ctx.features(to_tensor(resize(art, args.side), device), weights.style_layers)
    targets = {n: style_statistics(f, "gram") for n, f in style.items()}
    loss = GatysLoss(ctx.net, weights, feats, targets)
    x = start_image(
        content, init="palette", preserve_colors="off", palette=art, generator=torch.Generator()
    )
    pixels = x.clone().requires_grad_(True)
    value = loss.parts(pixels, ctx.features(pixels, loss.layers))["total"]
    (grad,) = torch.autograd.grad(value.sum(), pixels)
    rows = []
    for margin in (int(m) for m in args.margins.split(",")):
        tiles = tiles_of(x, args.tile, margin)
        area = sum((t.window[1] - t.window[0]) * (t.window[3] - t.window[2]) for t in tiles)
        began = time.process_time()
        tiled_value, tiled_grad = TiledLoss(loss, args.tile, margin).value_and_grad(ctx, x)
        seconds = time.process_time() - began
        columns = (tiled_grad - grad).abs().mean((0, 1, 2)) / grad.abs().mean()
        row = {
            "model": args.model,
            "weights": Path(args.weights).name,
            "margin": margin,
            "tiles": len(tiles),
            "area": round(area / (x.shape[-1] * x.shape[-2]), 3),
            "loss_error": float((tiled_value - value).abs().max() / value.abs().max()),
            "gradient_error": float((tiled_grad - grad).norm() / grad.norm()),
            "worst_column": float(columns.max()),
            "cpu_s": round(seconds, 2),
        }
        rows.append(row)
        print(
            f"margin {margin:3d}: {row['tiles']} tiles, area ×{row['area']:.2f}, loss error "
            f"{row['loss_error']:.1e}, gradient error {row['gradient_error']:.2e}, worst column "
            f"{row['worst_column']:.2e}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
