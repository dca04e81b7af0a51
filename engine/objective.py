"""The objective of a batch of jobs at one scale: each job's content features and blended style
targets, stacked row by row into one `GatysLoss`.

Style targets of a painting with a `cache_key` come from the style cache when they do not
depend on the photo (colour mode off); everything else is computed here with the network in the
run's precision. Content features are computed for the whole batch in one forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from engine import color, tiles, tiling
from engine.context import Context
from engine.errors import Cancelled
from engine.job import MIN_SIDE, Job
from engine.losses import GatysLoss, Targets, blend_targets, stack_targets, style_statistics
from engine.model import weights_identity
from engine.options import StyleInput
from engine.start import resize, to_tensor
from engine.style_cache import StyleCache, make_key


def _style_tensor(
    job: Job, style: StyleInput, side: int, content: torch.Tensor, device: torch.device
) -> torch.Tensor:
    long_side = max(MIN_SIDE, round(side * job.options.style_scale))
    tensor = to_tensor(resize(style.image.convert("RGB"), long_side), device)
    mode = job.options.preserve_colors
    if mode == "histogram":
        tensor = color.match_histogram(tensor, content)
    elif mode == "luminance":
        tensor = color.match_luminance(color.luminance(tensor), color.luminance(content))
    return tensor


def style_targets(
    ctx: Context,
    job: Job,
    side: int,
    content: torch.Tensor,
    precision: str,
    cache: StyleCache | None,
    tile: int | None = None,
) -> tuple[Targets, int]:
    """One job's blended targets at this scale (one row) and how many came from the cache;
    paintings bigger than `tile` are seen in tiles (engine.tiling)."""
    options, weights = job.options, job.weights
    all_targets, blend, hits = [], [], 0
    for style in job.styles:
        if job.cancelled():
            raise Cancelled("cancelled")
        key = None
        if style.cache_key and options.preserve_colors == "off" and cache is not None:
            key = make_key(
                cache_key=style.cache_key,
                model=options.model,
                weights=weights_identity(options.weights),
                size=side,
                style_scale=options.style_scale,
                style_loss=weights.kind,
                layers=weights.style_layers,
                precision=precision,
            )
        targets = cache.get(key) if key and cache is not None else None
        if targets is not None:
            hits += 1
            targets = {
                layer: {k: v.to(ctx.device) for k, v in t.items()} for layer, t in targets.items()
            }
        else:
            image = _style_tensor(job, style, side, content, ctx.device)
            if tiles.fits(image.shape[-2], image.shape[-1], tile):
                with torch.no_grad():
                    feats = ctx.features(image, weights.style_layers, precision)
                targets = {n: style_statistics(f, weights.kind) for n, f in feats.items()}
            else:
                assert tile is not None
                layers, kind = weights.style_layers, weights.kind
                targets = tiling.tiled_statistics(ctx, image, layers, kind, precision, tile)
            if key and cache is not None:
                cache.put(key, targets)
        all_targets.append(targets)
        blend.append(style.weight)
    return blend_targets(all_targets, blend, weights.kind), hits


def build(
    ctx: Context,
    jobs: Sequence[Job],
    contents: torch.Tensor,
    side: int,
    precision: str,
    caches: Sequence[StyleCache | None],
    tile: int | None = None,
) -> tuple[GatysLoss, list[int]]:
    """The batch's objective at `side` (`contents`: the jobs' photos there, one row each) and
    each job's count of cache hits. Pictures bigger than `tile` px a side are seen in tiles
    (engine.tiling); wrap the objective in a `TiledLoss` to optimize them likewise."""
    seen = torch.cat(
        [
            color.luminance(c) if job.options.preserve_colors == "luminance" else c
            for job, c in zip(jobs, contents.split(1), strict=True)
        ]
    )
    layers = jobs[0].weights.content_layers
    if tiles.fits(seen.shape[-2], seen.shape[-1], tile):
        with torch.no_grad():
            feats = ctx.features(seen, layers, precision)
    else:
        assert tile is not None
        feats = tiling.tiled_features(ctx, seen, layers, precision, tile)
    per_job = [
        style_targets(ctx, job, side, c, precision, cache, tile)
        for job, c, cache in zip(jobs, contents.split(1), caches, strict=True)
    ]
    targets = stack_targets([t for t, _ in per_job])
    loss = GatysLoss(ctx.net, [job.weights for job in jobs], feats, targets)
    return loss, [hits for _, hits in per_job]
