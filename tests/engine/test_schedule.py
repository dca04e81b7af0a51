"""Coarse-to-fine schedule math: sizes, aspect ratio, where the steps go."""

from __future__ import annotations

import itertools
import math

import pytest

from engine.options import StylizeOptions
from engine.schedule import BASE_SIDE, fit, geometric_sides, plan


@pytest.mark.parametrize("target", [200, 384, 512, 1024])
def test_sides_climb_from_128_in_sqrt2_steps_to_the_target(target: int) -> None:
    sides = geometric_sides(target, math.sqrt(2))
    assert sides[0] == BASE_SIDE and sides[-1] == target
    ratios = [b / a for a, b in itertools.pairwise(sides)]
    assert all(1.0 < r <= math.sqrt(2) + 0.02 for r in ratios)
    assert max(ratios) - min(ratios) < 0.03  # evenly spaced in log size


def test_small_targets_run_one_scale() -> None:
    assert geometric_sides(96, math.sqrt(2)) == (96,)
    assert plan(StylizeOptions(size=128)).sides == (128,)


def test_balanced_384_schedule_puts_most_iterations_at_small_scales() -> None:
    p = plan(StylizeOptions(size=384))
    assert p.sides == (128, 222, 384)
    assert p.steps == (100, 50, 100)
    cost = p.costs(1.0)
    assert cost[-1] > sum(cost[:-1])  # the full-size scale is where the final loss is set
    assert p.tolerance > 0


def test_quality_presets_order_by_work() -> None:
    work = {
        q: sum(plan(StylizeOptions(size=512, quality=q)).costs(1.0))
        for q in ("fast", "balanced", "high")
    }
    assert work["fast"] < work["balanced"] < work["high"]
    assert len(plan(StylizeOptions(size=512, quality="high")).sides) > len(
        plan(StylizeOptions(size=512)).sides
    )


def test_classic_recipe_is_one_full_scale_without_early_stop() -> None:
    p = plan(StylizeOptions(size=512, scales=(512,), steps=300))
    assert (p.sides, p.steps, p.tolerance) == ((512,), (300,), 0.0)


def test_overrides() -> None:
    p = plan(StylizeOptions(size=256, scales=(512, 128), steps=None))
    assert p.sides == (128, 256)  # sorted and capped at the output size
    assert plan(StylizeOptions(size=256, steps=9)).steps == (9, 9)
    assert plan(StylizeOptions(size=256, extra={"tolerance": 0.0})).tolerance == 0.0


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
