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

import dataclasses
from dataclasses import dataclass

from engine.options import StylizeOptions, Tuning
from engine.presets import QUALITY  # quality -> (half-size steps, full-size steps, tolerance)

COARSE_FROM = 600  # px; below this a half-size pass costs more than it saves
# Prints: from PRINT_FROM px the ladder halves down to the first side below COARSE_FROM (2048:
# 512, 1024, 2048), the first scale gets the preset's full-size steps and every later one the
# half-size pass's: a 2048 px step costs 16 of 512 px. Scales above HISTORY_FROM px keep
# PRINT_HISTORY curvature pairs: 2 × 50 pairs are 13 GB at 4096 × 2731 in fp32, 2 × 20 are
# 5.4. Measured at the top of a 512 (120 steps) → 1024 px ladder (VGG16 fixture, cat + Starry
# Night, bf16): final loss after 60 / 120 steps at 1024 px with 50 pairs 0.003052 / 0.002541,
# 20 pairs 0.003243 / 0.002636 (+3.7%), 10 pairs 0.003373 / 0.002718 (+7.0%).
PRINT_FROM = 1536
HISTORY_FROM = 1024
PRINT_HISTORY = 20
MIN_STEPS_BEFORE_STOP = 30  # L-BFGS barely moves in its first steps; that is not convergence
EARLY_STOP_WINDOW = 10


@dataclass(frozen=True)
class Plan:
    sides: tuple[int, ...]  # long side per scale, ascending, last == target
    steps: tuple[int, ...]
    tolerance: float  # 0 disables early stop
    history: tuple[int | None, ...] = ()  # L-BFGS pairs per scale (None: the tuning's)

    def tuning(self, index: int, base: Tuning) -> Tuning:
        """`base` with scale `index`'s L-BFGS history, where the plan caps it."""
        cap = self.history[index] if index < len(self.history) else None
        if cap is None or cap >= base.lbfgs_history:
            return base
        return dataclasses.replace(base, lbfgs_history=cap)

    def costs(self, aspect: float) -> list[float]:
        """Relative cost of each scale (steps x pixels), for an honest overall progress bar."""
        return [s * (side * side * aspect) for side, s in zip(self.sides, self.steps, strict=True)]


def plan(options: StylizeOptions) -> Plan:
    """`scales`/`steps` override the quality preset; an explicit `scales` keeps its order but is
    capped at `size`. With `steps` alone, every scale of the preset runs that many steps."""
    coarse, last, tolerance = QUALITY[options.quality]
    if options.scales:
        sides = tuple(sorted({min(int(s), options.size) for s in options.scales}))
    elif options.size >= PRINT_FROM:
        sides = _ladder(options.size)
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
    elif sides[-1] >= PRINT_FROM and not options.scales:
        steps = (last, *(coarse,) * (len(sides) - 1))
    else:
        steps = (*(coarse,) * (len(sides) - 1), last)
    if options.tuning.tolerance is not None:
        tolerance = float(options.tuning.tolerance)
    elif options.scales and options.steps is not None:
        tolerance = 0.0  # an explicit recipe: run all of it
    return Plan(sides=sides, steps=steps, tolerance=tolerance, history=_histories(sides))


def _ladder(size: int) -> tuple[int, ...]:
    sides = [size]
    while sides[0] // 2 >= COARSE_FROM // 2 and sides[0] >= COARSE_FROM:
        sides.insert(0, sides[0] // 2)
    return tuple(sides)


def _histories(sides: tuple[int, ...]) -> tuple[int | None, ...]:
    return tuple(PRINT_HISTORY if side > HISTORY_FROM else None for side in sides)


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
    history = _histories(sides) if plan.history else ()
    return Plan(sides=sides, steps=steps, tolerance=plan.tolerance, history=history), len(done)


def work(size: int, quality: str, aspect: float = 2 / 3) -> float:
    """A job's optimizing work at its preset schedule: Σ steps × pixels (tiles add a quarter or
    so more, engine.tiles.cost_factor). Its ratio between two jobs scales a measured run time
    into another's estimate, which is how the bot tells a print's ETA before it starts."""
    options = StylizeOptions(size=size, quality=quality)  # type: ignore[arg-type]
    return sum(plan(options).costs(aspect))


def fit(width: int, height: int, long_side: int) -> tuple[int, int]:
    """(width, height) with the given long side and the original aspect ratio (never squashed)."""
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))
