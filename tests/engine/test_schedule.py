"""Schedule math: which sizes run, how many steps each, aspect ratio."""

from __future__ import annotations

import pytest

from engine.options import StylizeOptions, Tuning
from engine.schedule import (
    COARSE_FROM,
    HISTORY_FROM,
    PRINT_FROM,
    PRINT_HISTORY,
    QUALITY,
    fit,
    plan,
    shrink_after_oom,
    work,
)


@pytest.mark.parametrize("size", [128, 384, COARSE_FROM - 1])
def test_below_the_threshold_one_full_size_scale(size: int) -> None:
    p = plan(StylizeOptions(size=size))
    assert p.sides == (size,)
    assert p.steps == (QUALITY["balanced"][1],)
    assert p.tolerance > 0


@pytest.mark.parametrize("size", [COARSE_FROM, 768, 1024, 1025])
def test_large_outputs_start_with_one_half_size_pass(size: int) -> None:
    p = plan(StylizeOptions(size=size))
    assert p.sides == (size // 2, size)
    coarse, last, _ = QUALITY["balanced"]
    assert p.steps == (coarse, last)
    cost = p.costs(1.0)
    assert cost[-1] > 3 * cost[0]  # the full-size scale is where the final loss is set


def test_quality_presets_order_by_work() -> None:
    work = {
        q: sum(plan(StylizeOptions(size=512, quality=q)).costs(1.0))
        for q in ("fast", "balanced", "high")
    }
    assert work["fast"] < work["balanced"] < work["high"]
    presets = ("fast", "balanced", "high")  # prints stand apart: a size, not a patience
    tolerances = [plan(StylizeOptions(size=512, quality=q)).tolerance for q in presets]
    assert tolerances == sorted(tolerances, reverse=True)  # more patience for higher quality


def test_classic_recipe_is_one_full_scale_without_early_stop() -> None:
    p = plan(StylizeOptions(size=512, scales=(512,), steps=300))
    assert (p.sides, p.steps, p.tolerance) == ((512,), (300,), 0.0)


def test_overrides() -> None:
    p = plan(StylizeOptions(size=256, scales=(512, 128), steps=None))
    assert p.sides == (128, 256)  # sorted and capped at the output size
    assert plan(StylizeOptions(size=256, steps=9)).steps == (9,)
    assert plan(StylizeOptions(size=800, steps=9)).steps == (9, 9)
    assert plan(StylizeOptions(size=256, tuning=Tuning(tolerance=0.0))).tolerance == 0.0


@pytest.mark.parametrize(
    ("size", "side", "expected"),
    [
        ((640, 480), 128, (128, 96)),
        ((480, 640), 128, (96, 128)),
        ((1000, 10), 100, (100, 1)),
        ((300, 300), 64, (64, 64)),
    ],
)
def test_fit_keeps_aspect(size: tuple[int, int], side: int, expected: tuple[int, int]) -> None:
    assert fit(*size, side) == expected


def test_out_of_memory_at_a_coarse_scale_caps_the_later_ones_and_keeps_their_budget() -> None:
    p = plan(StylizeOptions(size=800))  # (400, 800) with (60, 120) steps
    assert (p.sides, p.steps) == ((400, 800), (60, 120))
    shrunk, resume = shrink_after_oom(p, 0, 300)
    assert (shrunk.sides, shrunk.steps, resume) == ((300,), (120,), 0)
    assert shrunk.tolerance == p.tolerance


def test_out_of_memory_at_the_last_scale_keeps_the_finished_smaller_ones() -> None:
    p = plan(StylizeOptions(size=256, scales=(64, 128, 256), steps=10))
    shrunk, resume = shrink_after_oom(p, 2, 192)
    assert (shrunk.sides, shrunk.steps, resume) == ((64, 128, 192), (10, 10, 10), 2)
    shrunk, resume = shrink_after_oom(p, 2, 100)  # 128 no longer fits under 100 px
    assert (shrunk.sides, resume) == ((64, 100), 1)


@pytest.mark.parametrize(
    ("size", "sides"),
    [
        (PRINT_FROM, (384, 768, 1536)),
        (2048, (512, 1024, 2048)),
        (4096, (512, 1024, 2048, 4096)),
        (8192, (512, 1024, 2048, 4096, 8192)),
    ],
)
def test_prints_climb_a_ladder_from_a_side_where_the_picture_fits(
    size: int, sides: tuple[int, ...]
) -> None:
    p = plan(StylizeOptions(size=size))
    assert p.sides == sides
    coarse, last, _ = QUALITY["balanced"]
    assert p.steps == (last, *(coarse,) * (len(sides) - 1))  # most steps where they are cheap
    assert p.history == tuple(PRINT_HISTORY if s > HISTORY_FROM else None for s in sides)


def test_big_scales_keep_a_shorter_lbfgs_history() -> None:
    p = plan(StylizeOptions(size=2048))
    assert p.tuning(0, Tuning()).lbfgs_history == Tuning().lbfgs_history
    assert p.tuning(2, Tuning()).lbfgs_history == PRINT_HISTORY
    assert p.tuning(2, Tuning(lbfgs_history=5)).lbfgs_history == 5  # a smaller ask stands
    shrunk, _ = shrink_after_oom(p, 2, 1000)  # out of memory at 2048: the plan tops out lower
    assert shrunk.sides == (512, 1000) and shrunk.history == (None, None)


def test_a_print_costs_many_ordinary_jobs() -> None:
    # 512² × 120 + 1024² × 60 + 2048² × 60 over 384² × 120 (the bot says so up front)
    assert work(2048, "balanced") / work(384, "balanced") == pytest.approx(19.6, abs=0.1)
