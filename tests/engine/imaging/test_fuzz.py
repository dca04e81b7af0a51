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
    assert len(items) >= 1000
    with ThreadPoolExecutor(sandbox.MAX_PARALLEL) as pool:
        results = list(pool.map(_one, items))
    untyped = [(name, verdict) for _, name, verdict, *_ in results if verdict.startswith("UNTYPED")]
    slow = [
        (name, round(wall, 2))
        for _, name, _, wall, *_ in results
        if wall > BUDGET.wall_seconds + SLACK_S
    ]
    heavy = [(name, peak) for _, name, _, _, peak, _ in results if peak > BUDGET.memory_bytes]
    busy = [
        (name, cpu)
        for *_, name, _, _, _, cpu in [(r[0], *r[1:]) for r in results]
        if cpu > BUDGET.cpu_seconds
    ]
    _print_summary(results)
    assert untyped == [] and slow == [] and heavy == [] and busy == []
    verdicts = Counter(verdict for _, _, verdict, *_ in results)
    assert (
        verdicts["ok"] >= 100
    )  # the corpus is not all refusals: valid files and harmless edits pass
    by_family: dict[str, list[str]] = defaultdict(list)
    for family, _, verdict, *_ in results:
        by_family[family].append(verdict)
    assert all(verdict == "ok" for verdict in by_family["valid"] if verdict != "unsupported_format")
    assert set(by_family["non-image"]) == {"not_an_image"}
    assert all(verdict != "ok" for verdict in by_family["bomb"])


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
