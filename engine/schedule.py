"""Coarse-to-fine schedule: which long sides to optimize at, and how many steps at each.

Most iterations happen where they are cheap (a 128 px step costs ~1/9 of a 384 px one); each
scale starts from the upsampled previous result, so the large scales only refine detail. The
classic recipe is the degenerate schedule `scales=(size,)`, `steps=N`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.options import StylizeOptions

BASE_SIDE = 128

# quality -> (scale ratio, steps at the coarsest scale, at each middle scale, at the final
# scale, tolerance). Early stop ends a scale when the loss improved by less than `tolerance`
# (relative) over the last EARLY_STOP_WINDOW steps, never before MIN_STEPS_BEFORE_STOP.
# Why ratio 2 and a heavy last scale (bench/engine_speed.py, 384 px, VGG16 fixture, CPU): each
# upsampling throws the full-resolution loss back up (fine texture is lost) and recovering takes
# ~20-40 L-BFGS steps whatever the ratio, so fewer, larger jumps win, and the final loss is set
# by how many steps run at full size: √2 spacing (128-168-222-292-384, 150→30 steps) ended 25%
# above 128-256-384 with 150/60/80, and 100/50/100 was lower again in less time.
QUALITY: dict[str, tuple[float, int, int, int, float]] = {
    "fast": (2.0, 80, 30, 50, 3e-3),
    "balanced": (2.0, 100, 50, 100, 1e-3),
    "high": (math.sqrt(2), 200, 80, 200, 3e-4),
}
MIN_STEPS_BEFORE_STOP = 30  # L-BFGS barely moves in its first steps; that is not convergence
EARLY_STOP_WINDOW = 10


@dataclass(frozen=True)
class Plan:
    sides: tuple[int, ...]  # long side per scale, ascending, last == target
    steps: tuple[int, ...]
    tolerance: float  # 0 disables early stop

    def costs(self, aspect: float) -> list[float]:
        """Relative cost of each scale (steps x pixels), for an honest overall progress bar."""
        return [s * (side * side * aspect) for side, s in zip(self.sides, self.steps, strict=True)]


def geometric_sides(target: int, ratio: float, base: int = BASE_SIDE) -> tuple[int, ...]:
    """base, base·r, base·r², … , target — spaced evenly in log size, ending exactly on target."""
    if target <= base:
        return (target,)
    count = max(1, math.ceil(math.log(target / base) / math.log(ratio) - 1e-9))
    return tuple(round(base * (target / base) ** (i / count)) for i in range(count + 1))


def split_steps(first: int, middle: int, last: int, count: int) -> tuple[int, ...]:
    if count == 1:
        return (last,)
    return (first, *(middle,) * (count - 2), last)


def plan(options: StylizeOptions) -> Plan:
    """`scales`/`steps` override the quality preset; an explicit `scales` keeps its order but is
    capped at `size`. With `steps` alone, every scale of the preset runs that many steps."""
    ratio, first, middle, last, tolerance = QUALITY[options.quality]
    if options.scales:
        sides = tuple(sorted({min(int(s), options.size) for s in options.scales}))
    else:
        sides = geometric_sides(options.size, ratio)
    per_scale = options.extra.get("steps_per_scale")
    if per_scale is not None:  # tuning/bench hook: one step count per scale
        steps = tuple(int(n) for n in per_scale)
        if len(steps) != len(sides):
            raise ValueError("extra['steps_per_scale'] needs one entry per scale")
    elif options.steps is not None:
        steps = (int(options.steps),) * len(sides)
    else:
        steps = split_steps(first, middle, last, len(sides))
    if options.scales and options.steps is not None:
        tolerance = float(options.extra.get("tolerance", 0.0))  # explicit recipe: run it all
    else:
        tolerance = float(options.extra.get("tolerance", tolerance))
    return Plan(sides=sides, steps=steps, tolerance=tolerance)


def fit(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) with the given long side and the original aspect ratio (never squashed)."""
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))
