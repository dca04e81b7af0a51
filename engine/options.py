"""The painter's public vocabulary: what a caller asks for and what it hears back.

This module is the contract between the engine and its callers (CLI, queue workers); it imports
no torch so the bot can use it cheaply. Field names here are relied on elsewhere: extend, don't
rename.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image

Quality = Literal["fast", "balanced", "high"]
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
    extra: dict[str, Any] = field(default_factory=dict)


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


@dataclass
class StylizeResult:
    image: Image.Image
    report: dict[str, Any]
