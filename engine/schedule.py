"""The schedule: which long sides to optimize at, and how many steps at each.

Measured (bench/schedule_sweep.py: VGG16 fixture, cat + Starry Night, every loss evaluation
recorded, bench/results/): each upsampling throws the full-size loss back up 30-200x and costs
~20 full-size steps to recover. After 200 full-size steps no ladder tried (ratios 1.33 to 4,
96-256 px first scales, content boosts, detail transfer) was below a single full-size scale with
engine.lbfgs's preconditioner after its first 200 (best ladder 0.001646 vs 0.001646-0.001651,
the rest up to 9% higher), so at 384 px the coarse steps are pure extra cost. At 768 px one
half-size pass first still won for budgets under ~40% of the classic run, hence COARSE_FROM. The
classic recipe is `scales=(size,)`, `steps=N`.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.options import StylizeOptions
from engine.presets import QUALITY  # quality -> (half-size steps, full-size steps, tolerance)

COARSE_FROM = 600  # px; below this a half-size pass costs more than it saves
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


def plan(options: StylizeOptions) -> Plan:
    """`scales`/`steps` override the quality preset; an explicit `scales` keeps its order but is
    capped at `size`. With `steps` alone, every scale of the preset runs that many steps."""
    coarse, last, tolerance = QUALITY[options.quality]
    if options.scales:
        sides = tuple(sorted({min(int(s), options.size) for s in options.scales}))
    elif options.size >= COARSE_FROM:
        sides = (options.size // 2, options.size)
    else:
        sides = (options.size,)
    per_scale = options.tuning.steps_per_scale
    if per_scale is not None:  # tuning/bench hook: one step count per scale
        steps = tuple(int(n) for n in per_scale)
        if len(steps) != len(sides):
            raise ValueError("tuning.steps_per_scale needs one entry per scale")
    elif options.steps is not None:
        steps = (int(options.steps),) * len(sides)
    else:
        steps = (*(coarse,) * (len(sides) - 1), last)
    if options.tuning.tolerance is not None:
        tolerance = float(options.tuning.tolerance)
    elif options.scales and options.steps is not None:
        tolerance = 0.0  # an explicit recipe: run all of it
    return Plan(sides=sides, steps=steps, tolerance=tolerance)


def shrink_after_oom(plan: Plan, index: int, side: int) -> tuple[Plan, int]:
    """The plan to continue with after scale `index` ran out of memory at long side `side`.

    Every scale from `index` on is capped at `side` (a later, larger scale would not fit
    either); scales that collapse onto one side merge and keep the largest step budget among
    them, so the final scale keeps its budget. Finished scales below `side` stay. Returns the
    new plan and the index to resume at (its count of scales is what events must say)."""
    done = [(s, n) for s, n in zip(plan.sides[:index], plan.steps[:index], strict=True) if s < side]
    merged: dict[int, int] = {}
    for s, n in zip(plan.sides[index:], plan.steps[index:], strict=True):
        capped = min(s, side)
        merged[capped] = max(n, merged.get(capped, 0))
    rest = sorted(merged.items())
    sides = tuple(s for s, _ in done + rest)
    steps = tuple(n for _, n in done + rest)
    return Plan(sides=sides, steps=steps, tolerance=plan.tolerance), len(done)


def fit(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) with the given long side and the original aspect ratio (never squashed)."""
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))
