"""Packaging a packager accepts and installs that reproduce: the licence, the metadata, every
imported package declared, and the locks the Makefile, CI and the Dockerfile install from."""

from __future__ import annotations

import ast
import email
import importlib.metadata
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKS = (ROOT / "requirements" / "dev.txt", ROOT / "requirements" / "runtime.txt")
FIRST_PARTY = ("engine", "bot", "orsay", "tests", "scripts", "bench")


def _name(requirement: str) -> str:
    """`python-telegram-bot[webhooks]>=22; sys_platform...` -> `python-telegram-bot`."""
    match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(0)).lower()


def _pins(lock: Path) -> dict[str, list[str]]:
    """name -> the `==` versions a lock pins (one per Python-version marker)."""
    pins: dict[str, list[str]] = {}
    for line in lock.read_text().splitlines():
        if match := re.match(r"([a-z0-9][a-z0-9._-]*)==([^ ;\\]+)", line):
            pins.setdefault(match.group(1), []).append(match.group(2))
    return pins


def test_the_licence_and_its_metadata() -> None:
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    project = PYPROJECT["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    # an SPDX `license` string and `license-files` need setuptools >= 77 (PEP 639)
    [backend] = PYPROJECT["build-system"]["requires"]
    assert backend == "setuptools>=77"


def test_no_unused_extra() -> None:
    """PTB's rate-limiter extra installs aiolimiter; bot/pacing.py is its own limiter."""
    [ptb] = [d for d in PYPROJECT["project"]["dependencies"] if _name(d) == "python-telegram-bot"]
    assert "rate-limiter" not in ptb
    sources = "\n".join(p.read_text() for p in (ROOT / "bot").rglob("*.py"))
    assert "aiolimiter" not in sources and "AIORateLimiter(" not in sources


def _imports() -> dict[str, set[str]]:
    """Top-level modules imported anywhere in the project (not the standard library's)."""
    found: dict[str, set[str]] = {}
    for root in FIRST_PARTY:
        for path in (ROOT / root).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                        found.setdefault(top, set()).add(root)
    return found


def test_every_imported_package_is_declared() -> None:
    """Each third-party import comes from a distribution pyproject.toml names, so it cannot
    vanish when a dependency stops pulling it in (the tests import babel, engine numpy)."""
    project = PYPROJECT["project"]
    declared = {_name(d) for d in project["dependencies"]}
    declared |= {_name(d) for d in project["optional-dependencies"]["dev"]}
    providers = importlib.metadata.packages_distributions()
    imports = _imports()
    assert {"torch", "babel", "h5py", "pytest"} <= set(imports)  # the scan sees them
    missing = {
        module: sorted(providers.get(module, ["?"]))
        for module in imports
        if not {_name(dist) for dist in providers.get(module, [])} & declared
    }
    assert missing == {}


def test_the_locks_pin_everything_with_hashes_and_torch_in_one_place() -> None:
    dev, runtime = (_pins(lock) for lock in LOCKS)
    for lock in LOCKS:
        entries = re.split(r"\n(?=[a-z0-9])", lock.read_text().split("\n", 2)[2])
        assert entries and all("--hash=sha256:" in entry for entry in entries), lock
    # linters pinned: an unpinned ruff turns `ruff format --check` red overnight
    assert len(dev["ruff"]) == len(dev["mypy"]) == 1
    # the image runs what CI tested
    assert all(dev[name] == versions for name, versions in runtime.items())
    assert "pytest" not in runtime and "aiolimiter" not in dev
    # torch's release is chosen in pyproject's [tool.uv] and recorded in the lock; the Makefile,
    # the Dockerfile and CI name no version of their own
    constraints = dict(c.split("==") for c in PYPROJECT["tool"]["uv"]["constraint-dependencies"])
    for name in ("torch", "torchvision"):
        assert dev[name] == runtime[name] == [constraints[name]]
        for path in ("Makefile", "Dockerfile", ".ci/run"):
            assert not re.search(rf"{name}==\d", (ROOT / path).read_text()), path


def test_the_makefile_installs_from_the_lock_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install -q --require-hashes --no-deps -r $(LOCK)" in makefile
    assert "LOCK := requirements/dev.txt" in makefile
    assert "--no-deps --no-build-isolation -e ." in makefile


@pytest.mark.slow
def test_the_wheel_has_the_licence_and_declares_what_it_needs(tmp_path: Path) -> None:
    """Build the wheel (from a copy, so nothing lands in the repository) and read its metadata."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source)
    for package in ("engine", "bot", "orsay"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__py*"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist")],
        cwd=source, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    [wheel] = (tmp_path / "dist").glob("orsay-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = email.message_from_bytes(archive.read("orsay-0.1.0.dist-info/METADATA"))
    assert "orsay-0.1.0.dist-info/licenses/LICENSE" in names
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    requires = metadata.get_all("Requires-Dist") or []
    assert any(r.startswith("h5py") for r in requires)
    assert not any("rate-limiter" in r for r in requires)
    assert "engine/hed_weights.py" in names
