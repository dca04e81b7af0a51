"""`stylize`: the one call the CLI and the queue workers make.

Gatys et al. by optimization: pixels start from the photo (or noise/gray) and L-BFGS (or Adam)
pulls their VGG features towards the photo's content and the paintings' style statistics. A
coarse-to-fine schedule does most iterations at small sizes; each scale starts from the
upsampled previous result. Progress is reported per step, cancellation is checked inside the
L-BFGS closure (so a cancel lands within one step), and a GPU out-of-memory error restarts the
current scale at a smaller size instead of failing the request.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

from engine import color
from engine import device as devices
from engine.errors import Cancelled
from engine.lbfgs import BoxLBFGS, pyramid_preconditioner
from engine.losses import GatysLoss, LossWeights, Targets, blend_targets, style_statistics
from engine.model import VGGFeatures, load_features, weights_identity
from engine.options import ProgressEvent, StyleInput, StylizeOptions, StylizeResult
from engine.schedule import EARLY_STOP_WINDOW, MIN_STEPS_BEFORE_STOP, Plan, fit, plan
from engine.style_cache import StyleCache, default_cache, make_key

log = logging.getLogger(__name__)

ProgressFn = Callable[[ProgressEvent], None]
ADAM_LR = 0.02  # pixels live in [0, 1]; Gatys-Adam recipes use 1-10 on a 0-255 scale
OOM_SHRINK = 0.75  # each out-of-memory retry drops the size by a quarter
MIN_SIDE = 32
COARSE_CONTENT_BOOST = 0.0  # exponent; see _Run.objective
DETAIL_TRANSFER = True  # see _Run.initial; measured in bench/engine_speed.py
LBFGS_HISTORY = 50
# Pyramid preconditioner strength for L-BFGS (0 = none). bench/schedule_sweep.py, 384 px, 300
# steps from the photo: final loss 0.001617 without, 0.001559 at 0.25, 0.001566 at 0.5,
# 0.001584 at 1.0; at 768 px 0.25 was also best.
PRECONDITION = 0.25
PREVIEW_FRACTIONS = (1 / 3, 2 / 3)  # mid-scale previews, so one long scale still shows progress


def _to_tensor(image: Image.Image, device: torch.device) -> torch.Tensor:
    return pil_to_tensor(image.convert("RGB")).float().div(255).unsqueeze(0).to(device)


def _to_image(tensor: torch.Tensor) -> Image.Image:
    """Round (not truncate, as to_pil_image does) to 8 bits: truncation darkens by half a level."""
    rgb = tensor[0].detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    return to_pil_image(rgb)


def _resize(image: Image.Image, long_side: int) -> Image.Image:
    size = fit(image.width, image.height, long_side)
    return image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)


def _upsample(image: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(image, size=like.shape[-2:], mode="bicubic", align_corners=False)


def _downsample(image: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(image, size=like.shape[-2:], mode="bilinear", antialias=True)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled")


def _prepare_network(net: VGGFeatures, fmt: torch.memory_format) -> None:
    """Put the shared network's weights in the memory format the run uses (idempotent)."""
    if getattr(net, "_orsay_format", None) != fmt:
        net.to(memory_format=fmt)
        net._orsay_format = fmt  # type: ignore[assignment]


class _Run:
    """State of one `stylize` call; methods are the stages of the run."""

    def __init__(
        self,
        content: Image.Image,
        styles: Sequence[StyleInput],
        options: StylizeOptions,
        progress: ProgressFn | None,
        cancel: threading.Event | None,
        cache: StyleCache | None,
    ) -> None:
        if not styles:
            raise ValueError("stylize needs at least one style")
        self.options, self.progress, self.cancel = options, progress, cancel
        # Shrink each painting once to the largest size any scale needs (paintings are often
        # several thousand px; resizing those at every scale is wasted work).
        biggest = max(MIN_SIDE, round(options.size * options.style_scale))
        self.styles = [
            dataclasses.replace(s, image=_resize(s.image.convert("RGB"), biggest))
            if max(s.image.size) > biggest
            else s
            for s in styles
        ]
        self.cache = cache
        self.started = time.perf_counter()
        self.device = devices.pick_device(options.device)
        self.precision = devices.pick_precision(options.precision, self.device)
        self.fmt = devices.memory_format(self.device, self.precision)
        self.weights = LossWeights.from_options(options)
        self.plan = plan(options)
        # A fresh seed when none is given, without reseeding torch's global generator.
        self.seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
        if options.seed is not None:
            devices.make_deterministic(self.device)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.content_image = _resize(content.convert("RGB"), options.size)
        aspect = self.content_image.height / self.content_image.width
        self.aspect = (
            aspect if self.content_image.width >= self.content_image.height else 1 / aspect
        )
        self.scales: list[dict[str, Any]] = []
        self.oom: list[dict[str, Any]] = []
        self.cache_hits = 0
        self.opt_started: float | None = None
        self.net: VGGFeatures | None = None
        self.last_objective: GatysLoss | None = None

    # -- progress -------------------------------------------------------------------------------

    def emit(self, **fields: Any) -> None:
        if self.progress is None:
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
            "size": self.options.size,
            "step": 0,
            "total_steps": 0,
            "loss": None,
        }
        self.progress(
            ProgressEvent(**{**defaults, **fields}, fraction=fraction, elapsed_s=elapsed, eta_s=eta)
        )

    # -- targets --------------------------------------------------------------------------------

    def _style_tensor(self, style: StyleInput, side: int, content: torch.Tensor) -> torch.Tensor:
        long_side = max(MIN_SIDE, round(side * self.options.style_scale))
        tensor = _to_tensor(_resize(style.image.convert("RGB"), long_side), self.device)
        mode = self.options.preserve_colors
        if mode == "histogram":
            tensor = color.match_histogram(tensor, content)
        elif mode == "luminance":
            tensor = color.match_luminance(color.luminance(tensor), color.luminance(content))
        return tensor

    def style_targets(
        self, net: VGGFeatures, side: int, content: torch.Tensor, precision: str
    ) -> Targets:
        """Blended targets for this scale; per-painting targets come from the cache when the
        painting has a `cache_key` and its targets do not depend on the photo (colour mode off)."""
        all_targets, weights = [], []
        for style in self.styles:
            _check(self.cancel)
            key = None
            if style.cache_key and self.options.preserve_colors == "off" and self.cache:
                key = make_key(
                    cache_key=style.cache_key,
                    model=self.options.model,
                    weights=weights_identity(self.options.weights),
                    size=side,
                    style_scale=self.options.style_scale,
                    style_loss=self.weights.kind,
                    layers=self.weights.style_layers,
                    precision=precision,
                )
            targets = self.cache.get(key) if key and self.cache else None
            if targets is not None:
                self.cache_hits += 1
                targets = {
                    layer: {k: v.to(self.device) for k, v in t.items()}
                    for layer, t in targets.items()
                }
            else:
                image = self._style_tensor(style, side, content)
                with torch.no_grad(), devices.autocast(self.device, precision):
                    feats = net(image.contiguous(memory_format=self.fmt), self.weights.style_layers)
                targets = {n: style_statistics(f, self.weights.kind) for n, f in feats.items()}
                if key and self.cache:
                    self.cache.put(key, targets)
            all_targets.append(targets)
            weights.append(style.weight)
        return blend_targets(all_targets, weights, self.weights.kind)

    def objective(
        self, net: VGGFeatures, side: int, content: torch.Tensor, precision: str
    ) -> GatysLoss:
        seen = color.luminance(content) if self.options.preserve_colors == "luminance" else content
        with torch.no_grad(), devices.autocast(self.device, precision):
            feats = net(seen.contiguous(memory_format=self.fmt), self.weights.content_layers)
        weights = self.weights
        boost = float(self.options.extra.get("coarse_content_boost", COARSE_CONTENT_BOOST))
        if boost and side < self.options.size:
            # Coarse scales lean towards style (their layout is all the next scale keeps), so
            # the final scale starts farther from the photo than a one-scale run; a stronger
            # content pull there, fading to 1x at full size, keeps them in the same basin.
            factor = (self.options.size / side) ** boost
            weights = dataclasses.replace(weights, content=weights.content * factor)
        return GatysLoss(net, weights, feats, self.style_targets(net, side, content, precision))

    def content_at(self, side: int) -> torch.Tensor:
        return _to_tensor(_resize(self.content_image, side), self.device)

    def initial(self, content: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        if self.options.preserve_colors == "luminance":
            content = color.luminance(content)
        if previous is not None:
            up = _upsample(previous, content)
            if self.options.extra.get("detail_transfer", DETAIL_TRANSFER):
                # Laplacian-pyramid step: add back the photo's detail that the coarse scale
                # could not hold, so the new scale starts sharp rather than blurred.
                up = up + content - _upsample(_downsample(content, previous), content)
            return up.clamp(0, 1)
        if self.options.init == "noise":
            noise = torch.rand(content.shape, generator=self.generator).to(self.device)
            return noise
        if self.options.init == "gray":
            return torch.full_like(content, 0.5)
        if self.options.init == "palette" and self.options.preserve_colors == "off":
            # The painting's colours cost the optimizer nothing to find but many steps to reach:
            # from the recoloured photo the bench's 384 px run was 38% lower after 20 steps and
            # 1.8% lower after 145 than from the photo itself.
            main = max(self.styles, key=lambda s: s.weight)
            palette = _to_tensor(_resize(main.image, max(content.shape[-2:])), self.device)
            return color.match_histogram(content, palette).clamp(0, 1)
        return content.clone()

    # -- optimization ---------------------------------------------------------------------------

    def optimize_scale(
        self,
        index: int,
        side: int,
        steps: int,
        previous: torch.Tensor | None,
        done: float,
        total: float,
    ) -> torch.Tensor:
        assert self.net is not None
        _check(self.cancel)
        began = time.perf_counter()
        content = self.content_at(side)
        loss_fn = self.objective(self.net, side, content, self.precision)
        self.last_objective = loss_fn
        start = self.initial(content, previous).contiguous()
        layers = loss_fn.layers
        best_loss, best = math.inf, start.detach().clone()
        history: list[float] = []
        cost = steps * content.shape[-1] * content.shape[-2]

        evaluations = 0

        def evaluate(x: torch.Tensor) -> tuple[float, torch.Tensor]:
            """Loss and gradient at x; cancellation is checked here, so it lands within one
            evaluation even when a step needs several."""
            nonlocal best_loss, best, evaluations
            _check(self.cancel)
            evaluations += 1
            x = x.detach().requires_grad_(True)
            with devices.autocast(self.device, self.precision):
                feats = self.net(x.contiguous(memory_format=self.fmt), layers)  # type: ignore[misc]
            value = loss_fn.parts(x, feats)["total"]
            (grad,) = torch.autograd.grad(value, x)
            current = float(value.detach())
            if current < best_loss:
                best_loss, best = current, x.detach().clone()
            return current, grad

        take_step = self._stepper(start, evaluate)
        preview_at = {max(1, round(steps * f)) for f in PREVIEW_FRACTIONS} - {steps}
        run = 0
        for step in range(1, steps + 1):
            _check(self.cancel)
            value = take_step()
            run = step
            history.append(value)
            fraction = (done + cost * step / steps) / total
            self.emit(
                stage="optimizing",
                scale_index=index,
                scale_count=len(self.plan.sides),
                size=side,
                step=step,
                total_steps=steps,
                fraction=min(fraction, 1.0),
                loss=value if math.isfinite(value) else None,
                preview=_to_image(self.output(best, side)) if step in preview_at else None,
            )
            if not math.isfinite(value):
                log.warning("loss diverged at %d px step %d; keeping the best image", side, step)
                break
            if self._stalled(history):
                break
        self.scales.append(
            {
                "size": side,
                "width": content.shape[-1],
                "height": content.shape[-2],
                "steps_planned": steps,
                "steps_run": run,
                "evaluations": evaluations,
                "seconds": round(time.perf_counter() - began, 3),
                "best_loss": best_loss,
                "early_stopped": run < steps,
            }
        )
        return best

    def _stepper(
        self, start: torch.Tensor, evaluate: Callable[[torch.Tensor], tuple[float, torch.Tensor]]
    ) -> Callable[[], float]:
        """One optimizer iteration per call, returning the latest loss. L-BFGS is engine.lbfgs's
        box-aware one; extra['lbfgs'] = 'torch' runs torch.optim.LBFGS (fixed unit step, clamp
        after each step) for comparison in bench/engine_speed.py."""
        history = int(self.options.extra.get("history", LBFGS_HISTORY))
        if self.options.optimizer == "lbfgs" and self.options.extra.get("lbfgs", "box") == "box":
            strength = float(self.options.extra.get("precondition", PRECONDITION))
            levels = int(self.options.extra.get("precondition_levels", 4))
            box = BoxLBFGS(
                start,
                evaluate,
                history=history,
                precondition=pyramid_preconditioner(strength, levels) if strength else None,
            )
            return box.step
        pixels = start.clone().requires_grad_(True)
        optimizer: torch.optim.Optimizer
        if self.options.optimizer == "adam":
            optimizer = torch.optim.Adam([pixels], lr=ADAM_LR)
        else:
            optimizer = torch.optim.LBFGS([pixels], lr=1.0, max_iter=1, history_size=history)
        clamp_each_step = bool(self.options.extra.get("clamp", True))
        last = math.nan

        def closure() -> torch.Tensor:
            nonlocal last
            last, pixels.grad = evaluate(pixels)
            return torch.tensor(last)

        def step() -> float:
            optimizer.step(closure)
            if clamp_each_step:
                with torch.no_grad():
                    pixels.clamp_(0, 1)
            return last

        return step

    def _stalled(self, history: list[float]) -> bool:
        """Relative improvement over the last EARLY_STOP_WINDOW steps below the tolerance."""
        tol = self.plan.tolerance
        if tol <= 0 or len(history) < max(MIN_STEPS_BEFORE_STOP, EARLY_STOP_WINDOW + 1):
            return False
        before, now = history[-EARLY_STOP_WINDOW - 1], history[-1]
        return (before - now) <= tol * abs(before)

    def output(self, pixels: torch.Tensor, side: int) -> torch.Tensor:
        if self.options.preserve_colors == "luminance":
            return color.with_content_chroma(pixels, self.content_at(side))
        return pixels.clamp(0, 1)

    def final_losses(self, pixels: torch.Tensor, side: int) -> dict[str, float]:
        """Content/style/TV/total at the output resolution in fp32 with the run's weights, so runs
        with different schedules or precisions are compared on the same objective."""
        assert self.net is not None and self.last_objective is not None
        loss_fn = self.last_objective
        if self.precision != "fp32":  # the final objective is always evaluated in fp32
            loss_fn = self.objective(self.net, side, self.content_at(side), "fp32")
        with torch.no_grad():
            x = pixels.contiguous(memory_format=self.fmt)
            parts = loss_fn.parts(pixels, self.net(x, loss_fn.layers))
        return {k: float(v) for k, v in parts.items()}

    def paint(self) -> StylizeResult:
        opts = self.options
        devices.reset_peak_memory(self.device)
        self.emit(stage="loading")
        self.net = load_features(opts.model, opts.weights, self.device)
        _prepare_network(self.net, self.fmt)
        _check(self.cancel)
        self.emit(stage="style_targets")
        sides, steps = list(self.plan.sides), list(self.plan.steps)
        previous: torch.Tensor | None = None
        self.opt_started = time.perf_counter()
        index = 0
        while index < len(sides):
            costs = Plan(tuple(sides), tuple(steps), self.plan.tolerance).costs(self.aspect)
            total, done = sum(costs), sum(costs[:index])
            try:
                previous = self.optimize_scale(
                    index + 1, sides[index], steps[index], previous, done, total
                )
            except Exception as error:
                if not devices.is_oom(error) or sides[index] <= MIN_SIDE:
                    raise
                devices.free_cache(self.device)
                smaller = max(MIN_SIDE, int(sides[index] * OOM_SHRINK))
                message = f"{self.device.type.upper()} out of memory: retrying at {smaller} px"
                log.warning(message)
                self.oom.append({"from": sides[index], "to": smaller})
                keep = [i for i in range(index) if sides[i] < smaller]
                sides = [sides[i] for i in keep] + [smaller]
                steps = [steps[i] for i in keep] + [steps[index]]
                index = len(keep)
                costs = Plan(tuple(sides), tuple(steps), self.plan.tolerance).costs(self.aspect)
                self.emit(
                    stage="optimizing",
                    message=message,
                    size=smaller,
                    scale_index=index + 1,
                    scale_count=len(sides),
                    fraction=sum(costs[:index]) / sum(costs),
                )
                continue
            done += costs[index]
            index += 1
            result = self.output(previous, sides[index - 1])
            self.emit(
                stage="optimizing",
                scale_index=index,
                scale_count=len(sides),
                size=sides[index - 1],
                step=self.scales[-1]["steps_run"],
                total_steps=steps[index - 1],
                fraction=done / total,
                loss=self.scales[-1]["best_loss"],
                preview=_to_image(result),
            )
        assert previous is not None
        final_side = sides[-1]
        image = _to_image(self.output(previous, final_side))
        losses = self.final_losses(previous.clamp(0, 1), final_side)  # what the image holds
        wall = time.perf_counter() - self.started
        report = self.report(losses, wall, sides, image)
        self.emit(stage="done", fraction=1.0, loss=losses["total"], scale_index=len(sides))
        return StylizeResult(image=image, report=report)

    def report(
        self, losses: dict[str, float], wall: float, sides: list[int], image: Image.Image
    ) -> dict[str, Any]:
        settings = {
            f.name: getattr(self.options, f.name)
            for f in dataclasses.fields(self.options)
            if f.name != "extra"
        }
        settings["scales"] = list(settings["scales"]) if settings["scales"] else None
        settings["extra"] = {k: v for k, v in self.options.extra.items() if _jsonable(v)}
        return {
            "settings": settings,
            "loss_weights": self.weights.as_dict(),
            "seed": self.seed,
            "device": str(self.device),
            "precision": self.precision,
            "memory_format": "channels_last" if self.fmt == torch.channels_last else "contiguous",
            "schedule": {
                "sides": list(self.plan.sides),
                "steps": list(self.plan.steps),
                "tolerance": self.plan.tolerance,
                "sides_run": sides,
            },
            "scales": self.scales,
            "output_size": list(image.size),
            "final_losses": losses,
            "wall_s": round(wall, 3),
            "peak_memory": devices.peak_memory(self.device),
            "oom_fallbacks": self.oom,
            "style_cache_hits": self.cache_hits,
        }


def _jsonable(value: object) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def stylize(
    content: Image.Image,
    styles: Sequence[StyleInput],
    options: StylizeOptions,
    progress: ProgressFn | None = None,
    cancel: threading.Event | None = None,
) -> StylizeResult:
    """Repaint `content` in the blended style of `styles`; see StylizeOptions for the knobs.

    Raises engine.errors.Cancelled within one optimizer step of `cancel.set()`, WeightsError for
    unusable weights. Style targets of styles with a `cache_key` are cached in memory, and on
    disk in `options.extra["style_cache_dir"]` when the caller names one (the CLI, workers and
    the bot do).
    """
    use_cache = options.extra.get("style_cache", True)
    cache = default_cache(options.extra.get("style_cache_dir")) if use_cache else None
    return _Run(content, styles, options, progress, cancel, cache).paint()
