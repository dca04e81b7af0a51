"""What the bot benches share: their test photos and how they read a percentile."""

from __future__ import annotations

import io
import random

from PIL import Image


def photo(seed: int) -> bytes:
    """A distinct 160x120 noise JPEG (make it before the clock starts: encoding blocks the loop)."""
    image = Image.frombytes("RGB", (160, 120), random.Random(seed).randbytes(160 * 120 * 3))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def pct(values: list[float], q: float) -> float:
    """The `q` quantile by nearest rank; NaN for no values."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]
