"""Where the tiles of a picture too big for one pass go (engine.tiling paints them): pure
geometry, no torch, so the schedule, the progress report and the command line can use it.

Cores partition the picture on VGG's 16 px pooling grid; each core's window adds a margin of
context (clipped at the picture's edges), and no window is bigger than the tile.

Margins, measured (bench/tile_margin.py, cat + Starry Night at 512×341 px, 256 px tiles, the
relative error of the tiled gradient against the untiled one, fp32):

    margin px             0      16      32      48      64
    VGG16 fixture      0.12  4.4e-3  1.8e-4  8.9e-7  1.6e-7
    VGG16 random          -    0.11  1.1e-2  6.8e-4       -
    VGG19 random       0.35    0.15  2.1e-2  1.5e-3  2.6e-4

Trained features see much less far than random ones (VGG16: 25× less error at 16 px), so the
trained VGG16 needs 16 px: its worst column of the gradient is then 1.4% off, and a 100-step
painting in 192 px tiles shows no seam (tests/engine/test_tiling.py measures one). Trained
VGG19 weights could not be downloaded where this was measured; it gets 32 px, as random VGG16
needs 16 px more than trained VGG16 does.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

ALIGN = 16  # VGG's four 2×2 poolings: windows that start on this grid pool the same cells
MARGINS = {"vgg16": 16, "vgg19": 32}  # px of context around each core, by model (above)
MIN_TILE = 128  # smaller tiles are mostly margin; an OOM below this shrinks the picture instead
# A forward without gradient over a forward and backward with one (no weight gradients), at
# 1024 px in bf16 on 2 CPU cores: the time the exact scheme's first pass adds.
FORWARD_SHARE = 0.55

Box = tuple[int, int, int, int]  # top, bottom, left, right (half-open), in picture pixels


@dataclass(frozen=True)
class Tile:
    core: Box  # the pixels whose features this tile contributes (cores partition the picture)
    window: Box  # the pixels the network sees: the core and its margin, inside the picture


def margin_for(model: str) -> int:
    return MARGINS.get(model, max(MARGINS.values()))


def _cuts(length: int, tile: int, margin: int) -> list[tuple[int, int, int, int]]:
    """(core start, core end, window start, window end) along one axis, windows ≤ `tile`."""
    if length <= tile:
        return [(0, length, 0, length)]
    pieces = max(2, math.ceil((length - 2 * margin) / (tile - 2 * margin)))
    while True:
        # Edge cores get the margin the picture's border spares them, so all windows are alike.
        inner = (length - 2 * margin) / pieces
        bounds = (
            [0] + [ALIGN * round((margin + i * inner) / ALIGN) for i in range(1, pieces)] + [length]
        )
        cuts = [
            (a, b, max(0, a - margin), min(length, b + margin))
            for a, b in itertools.pairwise(bounds)
        ]
        if all(b > a and w1 - w0 <= tile for a, b, w0, w1 in cuts):
            return cuts
        pieces += 1


def plan_tiles(height: int, width: int, tile: int, margin: int) -> list[Tile]:
    """The tiles of a height × width picture: windows at most `tile` px a side (rounded down to
    the 16 px grid), cores on that grid, `margin` (also on the grid, and at most a quarter of
    the tile, so cores are at least half of a window) clipped at the edges."""
    tile = aligned(tile)
    margin = min(margin, tile // 4) // ALIGN * ALIGN
    rows, cols = _cuts(height, tile, margin), _cuts(width, tile, margin)
    return [
        Tile(core=(r0, r1, c0, c1), window=(wr0, wr1, wc0, wc1))
        for r0, r1, wr0, wr1 in rows
        for c0, c1, wc0, wc1 in cols
    ]


def aligned(px: int) -> int:
    """`px` rounded down to the 16 px grid (at least one cell)."""
    return max(ALIGN, px // ALIGN * ALIGN)


def fits(height: int, width: int, tile: int | None) -> bool:
    """Whether the picture is painted in one piece (no tile size set, or it is within one)."""
    return tile is None or max(height, width) <= tile


def count(height: int, width: int, tile: int | None, margin: int) -> int:
    """How many tiles the picture takes (1: painted in one piece)."""
    return (
        1
        if tile is None or fits(height, width, tile)
        else len(plan_tiles(height, width, tile, margin))
    )


def cost_factor(height: int, width: int, tile: int | None, margin: int) -> float:
    """Time of a tiled evaluation over an untiled one, for honest progress and ETA: the windows'
    area over the picture's, times the first pass's extra forward."""
    if tile is None or fits(height, width, tile):
        return 1.0
    windows = plan_tiles(height, width, tile, margin)
    area = sum((t.window[1] - t.window[0]) * (t.window[3] - t.window[2]) for t in windows)
    return area / (height * width) * (1.0 + FORWARD_SHARE)


def shrink_tile(side: int, tile: int | None, factor: float = 0.75) -> int | None:
    """The tile to retry with after an out-of-memory error at long side `side`, or None when
    tiles are already as small as is worth it (then the picture itself must shrink). Shrinking
    tiles first keeps the print's size: only the overlap, so the time, grows."""
    current = side if tile is None else min(tile, side)
    smaller = aligned(int(current * factor))
    return smaller if smaller >= MIN_TILE and smaller < current else None
