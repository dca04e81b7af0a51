"""Fixtures for the painter core: tiny synthetic pictures and fast default options.

Everything runs on CPU with random weights at 48-96 px, so the painter's tests cost seconds.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from engine.options import StylizeOptions

# The engine suite runs on the CPU; ORSAY_TEST_DEVICE=cuda runs the same tests on a GPU box.
TEST_DEVICE = os.environ.get("ORSAY_TEST_DEVICE", "cpu")


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


def _pattern(width: int, height: int, kind: str) -> Image.Image:
    """Deterministic pictures with structure (a photo-ish gradient + disc, or painted stripes)."""
    img = Image.new("RGB", (width, height))
    px = img.load()
    assert px is not None
    for y in range(height):
        for x in range(width):
            if kind == "photo":
                inside = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (height / 3) ** 2
                r = int(255 * x / width)
                g = 200 if inside else int(255 * y / height)
                b = 60 if inside else 180
            else:
                wave = 0.5 + 0.5 * math.sin((x + 2 * y) / 3.0)
                r, g, b = int(40 + 200 * wave), int(60 + 60 * wave), int(220 - 150 * wave)
            px[x, y] = (r, g, b)
    return img


@pytest.fixture(scope="session")
def photo() -> Image.Image:
    return _pattern(96, 64, "photo")  # landscape 3:2, so aspect bugs show


@pytest.fixture(scope="session")
def painting() -> Image.Image:
    return _pattern(80, 80, "painting")


@pytest.fixture
def test_device() -> str:
    return TEST_DEVICE


@pytest.fixture
def tiny_options(random_weights_vgg16: Path) -> StylizeOptions:
    """VGG16 with seeded random weights loaded from a file, 64 px, two scales, few steps."""
    return StylizeOptions(
        size=64,
        scales=(48, 64),
        steps=6,
        model="vgg16",
        weights=str(random_weights_vgg16),
        device=TEST_DEVICE,
        seed=7,
        precision="fp32",
    )
