"""Root fixtures every test package shares: the read-only ../shared data and throwaway weights.

Tests that need ../shared fail (never skip) when it is missing, so a CI box without the data
cannot report a green run that exercised nothing. Tests that do skip are counted by reason in
the run's last lines (`pytest_terminal_summary`), so "23 skipped" never goes unexplained.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from engine.settings import load_settings

RANDOM_WEIGHTS_SEED = 1234


def _shared_path() -> Path:
    return load_settings().shared_dir.resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder (env ORSAY_SHARED, else <repo>/../shared); fails loudly if absent."""
    path = _shared_path()
    if not (path / "artworks").is_dir() or not (path / "photos").is_dir():
        pytest.fail(
            f"shared test data not found at {path} (needs artworks/ and photos/). "
            "Set ORSAY_SHARED or place the shared folder next to the repository.",
            pytrace=False,
        )
    return path


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
        "redis-server is not installed",
        "Redis",
        "redis-server not installed — `apt install redis-server` "
        "(ORSAY_REQUIRE_REDIS=1, as .ci/run sets, makes them fail instead)",
    ),
)


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
