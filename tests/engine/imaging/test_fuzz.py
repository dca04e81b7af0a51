"""The fuzz corpus through the real door (sandboxed child per input): every input ends as a
picture or a typed ImageError, none over the time budget, none over the memory budget."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.errors import ImageError
from engine.imaging import Budget, sandbox
from tests.engine.imaging.corpus import corpus

BUDGET = Budget()
SLACK_S = 2.0  # fork, pipe and join around a decode that hit its wall-clock deadline


def _one(item: tuple[str, str, bytes]) -> tuple[str, str, str, float, int, float]:
    family, name, data = item
    start = time.perf_counter()
    try:
        outcome = sandbox.run(data, BUDGET, "normalized")
        verdict, peak, cpu = "ok", outcome.stats.peak_bytes, outcome.stats.cpu_s
    except ImageError as error:  # typed: what the door promises
        verdict, peak, cpu = error.code, 0, 0.0
    except Exception as error:  # untyped: what it must never do
        verdict, peak, cpu = f"UNTYPED {type(error).__name__}: {error}", 0, 0.0
    return family, name, verdict, time.perf_counter() - start, peak, cpu


@pytest.mark.slow
def test_fuzz_corpus_only_typed_errors_within_budget() -> None:
    items = list(corpus())
    assert len(items) >= 1000 and len({name for _, name, _ in items}) == len(items)
    with ThreadPoolExecutor(sandbox.MAX_PARALLEL) as pool:
        results = list(pool.map(_one, items))
    untyped = [(name, verdict) for _, name, verdict, *_ in results if verdict.startswith("UNTYPED")]
    slow = [
        (name, round(wall, 2))
        for _, name, _, wall, *_ in results
        if wall > BUDGET.wall_seconds + SLACK_S
    ]
    heavy = [(name, peak) for _, name, _, _, peak, _ in results if peak > BUDGET.memory_bytes]
    busy = [(name, cpu) for _, name, _, _, _, cpu in results if cpu > BUDGET.cpu_seconds]
    _print_summary(results)
    assert untyped == [] and slow == [] and heavy == [] and busy == []
    verdicts = {name: verdict for _, name, verdict, *_ in results}
    ok = sum(verdict == "ok" for verdict in verdicts.values())
    assert ok >= 100  # not all refusals: valid files and harmless edits pass
    by_family: dict[str, set[str]] = defaultdict(set)
    for family, _, verdict, *_ in results:
        by_family[family].add(verdict)
    refused_valid = {name: verdicts[name] for name in ("qoi", "jpeg2000")}
    assert refused_valid == {"qoi": "unsupported_format", "jpeg2000": "unsupported_format"}
    valid = {name: verdict for family, name, verdict, *_ in results if family == "valid"}
    assert {name: verdict for name, verdict in valid.items() if name not in refused_valid} == {
        name: "ok" for name in valid if name not in refused_valid
    }
    assert by_family["non-image"] == {"not_an_image"}
    assert {name: verdict for family, name, verdict, *_ in results if family == "bomb"} == BOMBS


# A 6000×6000 PNG of zeros is a decompression "bomb" by ratio, but 36 MP is within the budget:
# a real picture, accepted. Everything else in the family is over a limit.
BOMBS = {
    "png-header-30000": "image_too_large",
    "png-header-12000": "image_too_large",
    "png-zeros-6000": "ok",
    "ico-png-13000": "image_too_large",
    "bmp-rle8-6000": "image_too_costly",
    "jpeg-600-scans": "image_too_costly",
    "jpeg-sof-6000-tiny-body": "corrupt_image",
    "gif-screen-65535": "image_too_large",
    "tiff-60000": "image_too_large",
    "ppm-text-big": "unsupported_format",
    "qoi-4000": "unsupported_format",
}


def _print_summary(results: list[tuple[str, str, str, float, int, float]]) -> None:
    """Inputs, verdicts, the slowest wall time and the largest peak per family (pytest -s)."""
    families: dict[str, list[tuple[str, str, str, float, int, float]]] = defaultdict(list)
    for row in results:
        family = row[0].split("-")[0] if row[0].startswith(("mutated", "truncated")) else row[0]
        families[family].append(row)
    print(f"\n{'family':16} {'inputs':>6} {'max wall s':>10} {'max peak MiB':>12}  verdicts")
    for family, rows in sorted(families.items()):
        verdicts = Counter(row[2] for row in rows)
        print(
            f"{family:16} {len(rows):6} {max(r[3] for r in rows):10.2f} "
            f"{max(r[4] for r in rows) / 2**20:12.1f}  {dict(verdicts)}"
        )
