"""What one job tells its caller while it is painted (progress events with an honest overall
fraction and ETA) and after (the JSON-able run report). One `Reporter` per job, so a job in a
batch hears only its own events."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch
from PIL import Image

from engine import device as devices
from engine import tiles
from engine.job import Job
from engine.optimize import Lane, LaneResult
from engine.options import ProgressEvent
from engine.schedule import fit

PREVIEW_FRACTIONS = (1 / 3, 2 / 3)  # mid-scale previews, so one long scale still shows progress
TILE_EVENTS_EVERY = 1.0  # s between progress events inside an evaluation of a tiled scale


def _height_width(width: int, height: int, side: int) -> tuple[int, int]:
    w, h = fit(width, height, side)
    return h, w


def _unheard(step: int, loss: float, best: torch.Tensor | None) -> None:
    """The progress hook of a job without a listener."""


class Reporter:
    def __init__(self, job: Job, started: float) -> None:
        self.job, self.started = job, started
        self.plan = job.plan  # replaced when an out-of-memory error shrinks the schedule
        self.scales: list[dict[str, Any]] = []
        self.oom: list[dict[str, int]] = []
        self.cache_hits = 0
        self.opt_started: float | None = None
        self.tile: int | None = None  # the run's largest tile side (engine.tiling)
        self._costs: tuple[tuple[tuple[int, ...], int | None], list[float]] | None = None
        self._now = (0, 0, 0)  # scale index, side and step of the last step event
        self._tile_event = 0.0
        self._tile_floor = 0.0  # tile events never go back (a line search re-evaluates)

    def weigh_tiles(self, tile: int | None) -> None:
        """Cost every scale as painted with tiles of `tile` px (overlap and passes add time)."""
        self.tile = tile

    def costs(self) -> list[float]:
        """Each scale's relative cost (steps × pixels × the tiles' overhead)."""
        key = (self.plan.sides, self.tile)
        if self._costs is None or self._costs[0] != key:
            width, height = self.job.content.size
            margin = tiles.margin_for(self.job.options.model)
            factors = [
                tiles.cost_factor(*_height_width(width, height, side), self.tile, margin)
                for side in self.plan.sides
            ]
            costs = [c * f for c, f in zip(self.plan.costs(self.job.aspect), factors, strict=True)]
            self._costs = (key, costs)
        return self._costs[1]

    def emit(self, **fields: Any) -> None:
        if self.job.progress is None:
            return
        elapsed = time.perf_counter() - self.started
        fraction = float(fields.pop("fraction", 0.0))
        eta = None
        if self.opt_started is not None and fraction > 0:
            spent = time.perf_counter() - self.opt_started
            eta = spent / fraction * (1 - fraction)
        defaults: dict[str, Any] = {
            "scale_index": 0,
            "scale_count": len(self.plan.sides),
            "size": self.job.options.size,
            "step": 0,
            "total_steps": 0,
            "loss": None,
        }
        self.job.progress(
            ProgressEvent(**{**defaults, **fields}, fraction=fraction, elapsed_s=elapsed, eta_s=eta)
        )

    def fraction(self, index: int, step: float) -> float:
        """Overall progress after `step` steps of scale `index` (0-based), weighted by cost."""
        costs = self.costs()
        done = sum(costs[:index]) + costs[index] * step / self.plan.steps[index]
        return min(done / sum(costs), 1.0)

    def lane(self, index: int, side: int, show: Callable[[torch.Tensor], Image.Image]) -> Lane:
        """The job's lane for scale `index`: per-step events, previews a third and two thirds in;
        for a job nobody listens to, no events and no previews (a preview is a device read and
        a picture to encode)."""
        steps = self.plan.steps[index]
        self._now, self._tile_floor = (index, side, 0), self.fraction(index, 0)
        if self.job.progress is None:
            return Lane(steps, self.plan.tolerance, self.job.cancel, _unheard)

        def on_step(step: int, loss: float, best: torch.Tensor | None) -> None:
            self._now = (index, side, step)
            self._tile_floor = self.fraction(index, step)
            self.emit(
                stage="optimizing",
                scale_index=index + 1,
                size=side,
                step=step,
                total_steps=steps,
                fraction=self.fraction(index, step),
                loss=loss if loss == loss and abs(loss) != float("inf") else None,
                preview=show(best) if best is not None else None,
            )

        preview_at = frozenset(max(1, round(steps * f)) for f in PREVIEW_FRACTIONS) - {steps}
        return Lane(steps, self.plan.tolerance, self.job.cancel, on_step, preview_at)

    def tile_done(self, done: int, total: int) -> None:
        """Inside an evaluation of a tiled scale: `done` of its `total` tile passes are done.
        At most one event a TILE_EVENTS_EVERY, so a GPU's fast tiles do not flood the chat."""
        now = time.perf_counter()
        if now - self._tile_event < TILE_EVENTS_EVERY:
            return
        self._tile_event = now
        index, side, step = self._now
        steps = self.plan.steps[index]
        fraction = max(self._tile_floor, self.fraction(index, min(step + done / total, steps)))
        self._tile_floor = fraction
        self.emit(
            stage="optimizing",
            scale_index=index + 1,
            size=side,
            step=step,
            total_steps=steps,
            fraction=fraction,
            tile=done,
            tile_count=total,
        )

    def scale_done(self, index: int, side: int, out: LaneResult, image: Image.Image) -> None:
        assert out.best is not None
        height, width = out.best.shape[-2:]
        count = tiles.count(height, width, self.tile, tiles.margin_for(self.job.options.model))
        self.scales.append(
            {
                "size": side,
                "width": width,
                "height": height,
                "tiles": count,
                "steps_planned": self.plan.steps[index],
                "steps_run": out.steps_run,
                "evaluations": out.evaluations,
                "seconds": round(out.seconds, 3),
                "best_loss": out.best_loss,
                "early_stopped": out.early_stopped,
            }
        )
        self.emit(
            stage="optimizing",
            scale_index=index + 1,
            size=side,
            step=out.steps_run,
            total_steps=self.plan.steps[index],
            fraction=self.fraction(index, self.plan.steps[index]),
            loss=out.best_loss,
            preview=image,
        )

    def report(
        self,
        losses: dict[str, float],
        image: Image.Image,
        device: torch.device,
        precision: str,
        batch: int,
    ) -> dict[str, Any]:
        options = self.job.options
        settings = dataclasses.asdict(options)
        settings["scales"] = list(options.scales) if options.scales else None
        job_plan = self.job.plan
        return {
            "settings": settings,
            "loss_weights": self.job.weights.as_dict(),
            "seed": self.job.seed,
            "device": str(device),
            "precision": precision,
            "memory_format": "channels_last"
            if devices.memory_format(device, precision) == torch.channels_last
            else "contiguous",
            "schedule": {
                "sides": list(job_plan.sides),
                "steps": list(job_plan.steps),
                "tolerance": job_plan.tolerance,
                "sides_run": list(self.plan.sides),
            },
            "scales": self.scales,
            "output_size": list(image.size),
            "final_losses": losses,
            "wall_s": round(time.perf_counter() - self.started, 3),
            "peak_memory": devices.peak_memory(device),
            "oom_fallbacks": self.oom,
            "tile": self.tile,
            "style_cache_hits": self.cache_hits,
            "batch_size": batch,
        }
