"""The cluster fixture and the scenario table printed at the end of the run.

Each scenario appends its `Outcome` to tests.doubles.cluster.OUTCOMES; the table (scenario →
accepted, delivered once, duplicates, lost, unanswered) is printed in pytest's terminal summary,
so a run's figures can be quoted as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.doubles.cluster import OUTCOMES, ChaosTelegram, Cluster
from tests.doubles.queue_helpers import redis_available


@pytest.fixture
async def cluster(tmp_path: Path, test_data: Path) -> AsyncIterator[Cluster]:
    redis_available()
    telegram = ChaosTelegram()
    await telegram.start()
    cluster = Cluster(tmp_path, telegram, test_data / "artworks")
    try:
        yield cluster
    finally:
        await cluster.stop()
        await telegram.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not OUTCOMES:
        return
    terminalreporter.section("chaos scenarios (per style press)")
    terminalreporter.write_line(
        f"{'scenario':<34} {'accepted':>8} {'delivered once':>14} {'duplicates':>10} "
        f"{'lost':>4} {'unanswered':>10}"
    )
    for outcome in OUTCOMES:
        terminalreporter.write_line(outcome.row())
