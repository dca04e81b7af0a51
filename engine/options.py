"""The painter's public vocabulary: what a caller asks for and what it hears back.

This module is the contract between the engine and its callers (CLI, queue workers); it imports
no torch so the bot can use it cheaply. Field names here are relied on elsewhere: extend, don't
rename.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

Quality = Literal["fast", "balanced", "high", "print"]
ColorMode = Literal["off", "luminance", "histogram"]
ModelName = Literal["vgg19", "vgg16"]
OptimizerName = Literal["lbfgs", "adam"]
# palette: the photo recoloured with the painting's colour mean and covariance (the default);
# content: the photo as it is (the classic recipe); noise; gray.
InitName = Literal["palette", "content", "noise", "gray"]
StyleLossName = Literal["gram", "wasserstein"]
Stage = Literal["loading", "style_targets", "optimizing", "done"]


@dataclass(frozen=True)
class StyleInput:
    """One painting to learn from. `cache_key` (e.g. gallery slug + file checksum) lets the engine
    reuse that painting's style targets across requests; uploaded styles leave it None."""

    image: Image.Image
    weight: float = 1.0
    cache_key: str | None = None


@dataclass(frozen=True)
class Tuning:
    """Optimizer knobs that the quality presets fix and sweeps vary; the defaults are the
    measured choices (see engine/lbfgs.py and bench/schedule_sweep.py). A bot user never sets
    these: they exist so a benchmark can try a variant through the same code path."""

    lbfgs_history: int = 50  # curvature pairs kept (10/20/100 lost or cost more on the sweep)
    # Pyramid preconditioner strength (0 = none) and depth. 384 px, 300 steps from the photo:
    # final loss 0.001617 without, 0.001559 at 0.25, 0.001566 at 0.5, 0.001584 at 1.0.
    precondition: float = 0.25
    precondition_levels: int = 4
    # Laplacian detail transfer when a scale starts from the previous (smaller) one.
    detail_transfer: bool = True
    tolerance: float | None = None  # early-stop tolerance; None = the preset's (0 = off)
    steps_per_scale: tuple[int, ...] | None = None  # one step count per scale (sweeps)
    # Read the loss back to the host (progress events, the early-stop decision) every this many
    # steps; None = every step on CPU (where a read-back costs nothing) and every 8 on GPUs.
    progress_every: int | None = None
    # "First look": a few steps at this long side before the real run, so a preview reaches
    # the user within seconds at any output size; 0 turns it off. It only runs when someone
    # listens to progress and the output is larger than it.
    first_look_side: int = 128
    first_look_steps: int = 8


@dataclass
class StylizeOptions:
    """Everything a run can be told. Defaults give a good picture on a GPU; `quality` picks the
    schedule and `scales`/`steps` override it (the classic Gatys recipe is
    `scales=(512,), steps=300, optimizer="lbfgs", init="content"`)."""

    size: int = 512
    strength: float = 0.5
    style_scale: float = 1.0
    preserve_colors: ColorMode = "off"
    quality: Quality = "balanced"
    scales: tuple[int, ...] | None = None
    steps: int | None = None
    optimizer: OptimizerName = "lbfgs"
    model: ModelName = "vgg19"
    weights: str = "torchvision"
    device: str = "auto"
    seed: int | None = None
    init: InitName = "palette"
    style_loss: StyleLossName = "gram"
    content_weight: float | None = None
    style_weight: float | None = None
    tv_weight: float | None = None
    content_layers: tuple[str, ...] | None = None
    style_layers: tuple[str, ...] | None = None
    style_layer_weights: tuple[float, ...] | None = None
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    style_cache: bool = True  # reuse cached style targets of gallery paintings
    style_cache_dir: Path | None = None  # where they are kept on disk (None: memory only)
    # Largest tile side in px: a scale whose picture is bigger is painted in overlapping tiles
    # (engine.tiling), so its memory is set by the tile. None: chosen from the device's free
    # memory (engine.tiling.pick_tile); 0: never tile.
    tile: int | None = None
    tuning: Tuning = field(default_factory=Tuning)


@dataclass(frozen=True)
class ProgressEvent:
    """What the painter says while it works. `fraction` is overall progress in [0, 1] across all
    scales (weighted by their cost), so a single bar can show the whole run."""

    stage: Stage
    scale_index: int  # 1-based
    scale_count: int
    size: int  # long side at this scale
    step: int
    total_steps: int
    fraction: float
    loss: float | None
    elapsed_s: float
    eta_s: float | None
    preview: Image.Image | None = None
    message: str | None = None  # e.g. "GPU out of memory: retrying at 384 px"
    first_look: bool = False  # the preview is the quick low-resolution first look
    tile: int = 0  # inside an evaluation of a tiled scale: tile passes done of `tile_count`
    tile_count: int = 0  # 0: the scale is painted in one piece (or the event is a step's)


@dataclass
class StylizeResult:
    image: Image.Image
    report: dict[str, Any]


@dataclass
class BatchJob:
    """One request for `engine.style_transfer.stylize_batch`: what `stylize` takes, as one value.
    Its `progress` hears only this job's events and its `cancel` stops only this job."""

    content: Image.Image
    styles: Sequence[StyleInput]
    options: StylizeOptions
    progress: Callable[[ProgressEvent], None] | None = None
    cancel: threading.Event | None = None
