"""One painting request made ready for the pieces that paint it (engine.objective,
engine.start, engine.optimize, engine.style_transfer): its photo and paintings resized once, its
loss weights, schedule, seed and where its events go. Torch-light: tensors are made per scale."""

from __future__ import annotations

import dataclasses
import secrets
import threading
from collections.abc import Callable

import torch
from PIL import Image

from engine.losses import LossWeights
from engine.options import BatchJob, ProgressEvent, StyleInput, StylizeOptions
from engine.schedule import Plan, plan
from engine.start import resize, to_tensor

MIN_SIDE = 32
ProgressFn = Callable[[ProgressEvent], None]


@dataclasses.dataclass
class Job:
    options: StylizeOptions
    content: Image.Image  # the photo at the output size
    styles: list[StyleInput]  # shrunk to the largest size any scale needs
    weights: LossWeights
    plan: Plan
    seed: int
    generator: torch.Generator
    progress: ProgressFn | None
    cancel: threading.Event | None

    @classmethod
    def prepare(cls, request: BatchJob) -> Job:
        options = request.options
        if not request.styles:
            raise ValueError("stylize needs at least one style")
        # Paintings are often several thousand px; resizing those at every scale is waste.
        biggest = max(MIN_SIDE, round(options.size * options.style_scale))
        styles = [
            dataclasses.replace(s, image=resize(s.image.convert("RGB"), biggest))
            if max(s.image.size) > biggest
            else s
            for s in request.styles
        ]
        # A fresh seed when none is given, without reseeding torch's global generator.
        seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
        return cls(
            options=options,
            content=resize(request.content.convert("RGB"), options.size),
            styles=styles,
            weights=LossWeights.from_options(options),
            plan=plan(options),
            seed=seed,
            generator=torch.Generator().manual_seed(seed),
            progress=request.progress,
            cancel=request.cancel,
        )

    @property
    def aspect(self) -> float:
        """Short side over long side of the output."""
        w, h = self.content.size
        return min(w, h) / max(w, h)

    def content_at(self, side: int, device: torch.device) -> torch.Tensor:
        return to_tensor(resize(self.content, side), device)

    def main_style(self) -> Image.Image:
        return max(self.styles, key=lambda s: s.weight).image

    def cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()
