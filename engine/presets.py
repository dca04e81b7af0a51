"""The named choices a user picks from, in one place: qualities and strengths.

The bot offers them as buttons, the CLI as flag values, the queue carries the names and the
painter turns them into numbers; all of them read this table, so a new preset is one edit here.
An unknown name raises `UnknownPreset` (a bug or a stale stored value: painting something else
than was asked would hide it). No torch (nor PIL) import: the bot and the settings use it cheaply.
"""

from __future__ import annotations

QUALITIES = ("fast", "balanced", "high")  # in the order the bot shows them
DEFAULT_QUALITY = "balanced"
# The big-print quality: offered only where the operator sets ORSAY_PRINT_SIZE (its long side;
# engine.settings), painted alone and in tiles where it does not fit (engine.tiling), and sent
# as a file, which Telegram does not recompress.
PRINT = "print"

# quality -> output long side the bot asks for (capped by ORSAY_MAX_SIZE).
QUALITY_SIZES: dict[str, int] = {"fast": 256, "balanced": 384, "high": 512}

# quality -> (steps at the half-size pass, steps at full size, tolerance) for engine.schedule.
# Early stop ends a scale when the loss improved by less than `tolerance` (relative) over the
# last EARLY_STOP_WINDOW steps, never before MIN_STEPS_BEFORE_STOP (both in engine.schedule).
QUALITY: dict[str, tuple[int, int, float]] = {
    "fast": (40, 60, 3e-3),
    "balanced": (60, 120, 1e-3),
    "high": (100, 300, 3e-4),
    # Prints run engine.schedule's ladder from ~512 px: the full-size count at its first scale,
    # the half-size pass's at every later one (see engine.schedule.PRINT_FROM).
    PRINT: (60, 120, 1e-3),
}

# The bot's three strength levels, weakest first (its -/+ buttons step through them).
STRENGTH_LEVELS = ("gentle", "medium", "strong")
DEFAULT_STRENGTH = "medium"

# Every strength name the bot and CLI accept (besides a number in [0, 1] on the CLI) -> the
# painter's strength; "low"/"high" are the CLI's synonyms of "gentle"/"strong".
STRENGTHS: dict[str, float] = {
    "low": 0.25,
    "gentle": 0.25,
    "medium": 0.5,
    "high": 0.85,
    "strong": 0.85,
}


class UnknownPreset(ValueError):
    """A quality or strength name that is not in the table; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: tuple[str, ...]) -> None:
        super().__init__(f"unknown {kind} {name!r}: expected one of {', '.join(known)}")


def check_quality(name: str) -> str:
    """`name` if it is a quality, else UnknownPreset."""
    if name not in QUALITIES:
        raise UnknownPreset("quality", name, QUALITIES)
    return name


def size_for(quality: str, max_size: int) -> int:
    """Output long side for a quality name, capped at `max_size`."""
    return min(QUALITY_SIZES[check_quality(quality)], max_size)


def strength_value(name: str) -> float:
    """The painter's strength for a strength name."""
    if name not in STRENGTHS:
        raise UnknownPreset("strength", name, tuple(STRENGTHS))
    return STRENGTHS[name]
