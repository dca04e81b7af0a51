"""Schedule math: which sizes run, how many steps each, aspect ratio."""

from __future__ import annotations

import pytest

from engine.options import StylizeOptions, Tuning
from engine.schedule import COARSE_FROM, QUALITY, fit, plan, shrink_after_oom


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
    tolerances = [plan(StylizeOptions(size=512, quality=q)).tolerance for q in QUALITY]
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
