"""The cluster fixture and the scenario table printed at the end of the run.

Each scenario appends its `Outcome` to tests.doubles.cluster.OUTCOMES; the table (scenario, the
fake Telegram's link profile → accepted, delivered once, duplicates, lost, unanswered) is printed
in pytest's terminal summary, so a run's figures can be quoted as they are.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.doubles.cluster import OUTCOMES, ChaosTelegram, Cluster, Outcome
from tests.doubles.link import INSTANT, Link
from tests.doubles.queue_helpers import redis_available


@pytest.fixture
def link(request: pytest.FixtureRequest) -> Link:
    """The fake Telegram's timing: instant, unless a module parametrizes `link` indirectly with
    a profile of tests/doubles/link.py (tests/chaos/test_slow_link.py: the slow link)."""
    return getattr(request, "param", INSTANT)


@pytest.fixture
async def cluster(tmp_path: Path, test_data: Path, link: Link) -> AsyncIterator[Cluster]:
    redis_available()
    telegram = ChaosTelegram(link)
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
    terminalreporter.write_line(Outcome.header())
    for outcome in OUTCOMES:
        terminalreporter.write_line(outcome.row())
