"""`orsay stylize` and `orsay gallery`: flag mapping, one-line errors with exit 2, real runs."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from engine import gallery, imaging
from engine.commands import stylize as stylize_command
from engine.options import ProgressEvent, Stage, StylizeOptions
from engine.settings import load_settings
from orsay import cli
from tests.doubles.static_http import static_servers


@pytest.fixture(autouse=True)
def _restore_gallery_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own ORSAY_GALLERY_DIR must not change what these tests see."""
    monkeypatch.delenv("ORSAY_GALLERY_DIR", raising=False)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="orsay")
    stylize_command.register(parser.add_subparsers(dest="command", required=True), load_settings())
    return parser.parse_args(["stylize", *argv])


def _options(*argv: str) -> StylizeOptions:
    return stylize_command.options_from_args(_parse("photo.jpg", "-o", "out.jpg", *argv))


def test_help_and_parsing_do_not_import_torch() -> None:
    code = (
        "import sys, argparse; from engine.commands import stylize, gallery; "
        "from engine.settings import load_settings; c = load_settings(); "
        "p = argparse.ArgumentParser(); s = p.add_subparsers(); "
        "stylize.register(s, c); gallery.register(s, c); "
        "a = p.parse_args(['stylize', 'a.jpg', '--style', 'x', '-o', 'b.jpg']); "
        "stylize.options_from_args(a); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- parsing → StylizeOptions -----------------------------------------------------------------


def test_defaults_match_stylize_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ORSAY_VGG_WEIGHTS", raising=False)
    monkeypatch.delenv("ORSAY_DEVICE", raising=False)
    options = _options("--style", "klimt-the-kiss")
    assert options == StylizeOptions()  # every CLI default is the engine's default


def test_classic_gatys_recipe_is_expressible() -> None:
    options = _options(
        "--style", "x", "--scales", "512", "--steps", "300", "--optimizer", "lbfgs",
        "--init", "content",
    )  # fmt: skip
    assert (options.scales, options.steps, options.size) == ((512,), 300, 512)
    assert (options.optimizer, options.init) == ("lbfgs", "content")


def test_every_flag_reaches_its_option() -> None:
    options = _options(
        "--style", "a", "--style", "b.png", "--style-weight", "0.7", "--size", "640",
        "--strength", "high", "--preserve-colors", "histogram", "--quality", "high",
        "--scales", "128, 256,640", "--steps", "40", "--optimizer", "adam", "--model", "vgg16",
        "--weights", "/w.pth", "--device", "cuda:1", "--precision", "bf16", "--seed", "7",
        "--init", "noise", "--style-loss", "wasserstein", "--style-scale", "1.5",
        "--content-weight", "2", "--style-weight-total", "1e5", "--tv-weight", "0.1",
        "--content-layers", "relu4_2", "--style-layers", "relu1_1,relu2_1",
        "--style-layer-weights", "1,0.5", "--no-style-cache",
    )  # fmt: skip
    assert options == StylizeOptions(
        size=640,
        strength=0.85,
        style_scale=1.5,
        preserve_colors="histogram",
        quality="high",
        scales=(128, 256, 640),
        steps=40,
        optimizer="adam",
        model="vgg16",
        weights="/w.pth",
        device="cuda:1",
        seed=7,
        init="noise",
        style_loss="wasserstein",
        content_weight=2.0,
        style_weight=1e5,
        tv_weight=0.1,
        content_layers=("relu4_2",),
        style_layers=("relu1_1", "relu2_1"),
        style_layer_weights=(1.0, 0.5),
        precision="bf16",
        style_cache=False,
    )


@pytest.mark.parametrize(
    ("flag", "expected"),
    [("low", 0.25), ("MEDIUM", 0.5), ("strong", 0.85), ("0", 0.0), ("0.3", 0.3), ("1", 1.0)],
)
def test_strength_numbers_and_names(flag: str, expected: float) -> None:
    assert _options("--style", "x", "--strength", flag).strength == expected


def test_preserve_colors_bare_flag_means_luminance() -> None:
    assert _options("--style", "x", "--preserve-colors").preserve_colors == "luminance"
    assert _options("--style", "x").preserve_colors == "off"


def test_scales_without_size_paint_at_the_largest_scale() -> None:
    assert _options("--style", "x", "--scales", "96,192").size == 192
    assert _options("--style", "x", "--scales", "96,192", "--size", "150").size == 150


def test_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORSAY_VGG_WEIGHTS", "/models/vgg.pth")
    monkeypatch.setenv("ORSAY_DEVICE", "cpu")
    options = _options("--style", "x")
    assert (options.weights, options.device) == ("/models/vgg.pth", "cpu")
    assert _options("--style", "x", "--weights", "random").weights == "random"


def test_style_weights_pad_with_ones() -> None:
    args = _parse("p.jpg", "-o", "o.jpg", "--style", "a", "--style", "b", "--style-weight", "3")
    assert stylize_command.style_weights(args) == [3.0, 1.0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--strength", "extreme"], "expected a number in [0, 1] or low|"),
        (["--strength", "1.5"], "strength must be between 0 and 1"),
        (["--scales", "16,64"], "at least 32 px"),
        (["--scales", "big"], "expected sizes like 128,256,512"),
        (["--device", "tpu"], "expected auto, cpu, cuda, cuda:N or mps"),
        (["--optimizer", "sgd"], "invalid choice: 'sgd'"),
        (["--size", "0"], "must be a positive integer"),
        (["--style-weight", "-1"], "must not be negative"),
    ],
)
def test_bad_flags_exit_2_with_a_message(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        _parse("p.jpg", "-o", "o.jpg", "--style", "x", *argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


# --- friendly failures before any painting ---------------------------------------------------


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    Image.new("RGB", (60, 40), "green").save(path)
    return path


def _fails(capsys: pytest.CaptureFixture[str], argv: list[str], *, alone: bool = True) -> str:
    """Exit code 2 and one `orsay: error:` line (`alone`: nothing else, not even a bar)."""
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("orsay: error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], captured.err
    assert len(lines) == 1 or not alone, captured.err
    assert "Traceback" not in captured.err
    return errors[0]


def test_bad_inputs_exit_2_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, photo: Path, test_data: Path
) -> None:
    out = tmp_path / "out.jpg"
    gallery_dir = str(test_data / "artworks")
    base = ["stylize", "--gallery-dir", gallery_dir, "-o", str(out), "--weights", "random"]
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture")

    assert "photo not found" in _fails(capsys, [*base, str(tmp_path / "nope.jpg"), "--style", "x"])
    assert "not a picture I can read" in _fails(
        capsys, [*base, str(text), "--style", "klimt-the-kiss"]
    )
    assert "did you mean van-gogh-starry-night" in _fails(
        capsys, [*base, str(photo), "--style", "starry"]
    )
    assert "does not exist" in _fails(
        capsys, [*base, str(photo), "--style", str(tmp_path / "gone" / "s.png")]
    )
    assert "not a picture I can read" in _fails(capsys, [*base, str(photo), "--style", str(text)])
    assert "2 --style-weight values for 1 --style" in _fails(
        capsys,
        [
            *base,
            str(photo),
            "--style",
            "klimt-the-kiss",
            "--style-weight",
            "1",
            "--style-weight",
            "2",
        ],
    )
    bad_suffix = ["stylize", str(photo), "--style", "klimt-the-kiss", "-o", str(tmp_path / "o.gif")]
    assert "cannot write .gif" in _fails(capsys, bad_suffix)
    assert not out.exists()


def test_unusable_weights_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, photo: Path, test_data: Path
) -> None:
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a state dict")
    line = _fails(
        capsys,
        [
            "stylize", str(photo), "--style", "klimt-the-kiss", "--gallery-dir",
            str(test_data / "artworks"), "--weights", str(broken), "-o", str(tmp_path / "o.jpg"),
        ],
        alone=False,  # the progress bar had started; it is erased, not left half-drawn
    )  # fmt: skip
    assert "broken.pth" in line and "corrupt" in line


# --- progress bar -----------------------------------------------------------------------------


def _event(stage: Stage, scale: int, step: int, fraction: float, **more: Any) -> ProgressEvent:
    fields: dict[str, Any] = {"loss": None, "eta_s": None, **more}
    return ProgressEvent(
        stage, scale, 2, size=128, step=step, total_steps=30, fraction=fraction,
        elapsed_s=1.0, **fields,
    )  # fmt: skip


def test_progress_bar_shows_scale_loss_and_eta(capsys: pytest.CaptureFixture[str]) -> None:
    bar = stylize_command.ProgressBar(enabled=True)
    bar(_event("loading", 0, 0, 0.0))
    bar(_event("optimizing", 2, 5, 0.6, loss=0.0123, eta_s=75))
    bar(_event("optimizing", 2, 6, 0.65, message="GPU out of memory: retrying at 96 px"))
    bar.close()
    err = capsys.readouterr().err
    assert "scale 2/2 128px" in err and "step 5/30" in err and "loss 0.0123" in err
    assert "ETA 1:15" in err and " 60%" in err
    assert "orsay: GPU out of memory: retrying at 96 px" in err


def test_progress_bar_leaves_out_the_scale_count_of_a_one_scale_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bar = stylize_command.ProgressBar(enabled=True)
    bar(dataclasses.replace(_event("optimizing", 1, 5, 0.2, loss=0.5), scale_count=1))
    bar.close()
    err = capsys.readouterr().err
    assert "128px" in err and "step 5/30" in err and "scale 1/1" not in err


# --- real runs --------------------------------------------------------------------------------


def test_stylize_writes_an_image_of_the_photo_aspect_and_a_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, test_data: Path, random_weights: Path
) -> None:
    content = test_data / "photos" / "chelsea-the-cat.png"
    out = tmp_path / "result" / "cat.png"
    report = tmp_path / "report.json"
    code = cli.main(
        [
            "stylize", str(content), "--style", "van-gogh-starry-night",
            "--gallery-dir", str(test_data / "artworks"), "--weights", str(random_weights),
            "--size", "96", "--scales", "64,96", "--steps", "3", "--seed", "1",
            "--device", "cpu", "-o", str(out), "--report", str(report),
        ]
    )  # fmt: skip
    assert code == 0
    with Image.open(content) as photo:
        width, height = photo.size
    with Image.open(out) as image:
        assert image.format == "PNG" and image.mode == "RGB"
        assert max(image.size) == 96
        assert image.size == (96, round(96 * height / width))
    data = json.loads(report.read_text())
    assert data["args"]["style"] == ["van-gogh-starry-night"]
    assert data["args"]["weights"] == str(random_weights)
    assert data["output_size"] == list(image.size)
    assert data["report"]["output_size"] == list(image.size)
    assert data["report"]["schedule"]["sides"] == [64, 96]
    assert data["cli_wall_s"] > 0
    err = capsys.readouterr().err
    assert "scale 2/2 96px" in err and f"wrote {out}" in err


@pytest.mark.slow
def test_stylize_blends_a_gallery_painting_and_an_uploaded_style(
    tmp_path: Path, test_data: Path, random_weights_vgg16: Path
) -> None:
    upload = tmp_path / "upload.png"
    Image.new("RGBA", (80, 120), (200, 30, 30, 255)).save(upload)
    content = test_data / "photos" / "grace-hopper.jpg"  # portrait: the long side is height
    out = tmp_path / "hopper.jpg"
    code = cli.main(
        [
            "stylize", str(content), "--style", "munch-the-scream", "--style", str(upload),
            "--style-weight", "0.3", "--style-weight", "0.7", "--preserve-colors", "histogram",
            "--gallery-dir", str(test_data / "artworks"), "--model", "vgg16",
            "--weights", str(random_weights_vgg16), "--size", "80", "--scales", "80",
            "--steps", "2", "--device", "cpu", "-q", "-o", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    with Image.open(content) as photo:
        width, height = photo.size
    with Image.open(out) as image:
        assert image.format == "JPEG"
        assert image.size == (round(80 * width / height), 80)


@pytest.fixture
def serve() -> Iterator[Callable[[Path], str]]:
    with static_servers() as servers:
        yield servers.start


def _only_painting(monkeypatch: pytest.MonkeyPatch, url: str, data: bytes) -> None:
    """Make the packaged gallery one painting, `night-swirls`, pinned at `url`."""
    painting = gallery.Painting(
        slug="night-swirls", title="Night Swirls", artist="Someone", year="1889", url=url,
        sha256=hashlib.sha256(data).hexdigest(), bytes=len(data), license="public domain",
    )  # fmt: skip
    monkeypatch.setattr(gallery, "_packaged", lambda: (painting,))


def test_stylize_fetches_a_missing_gallery_painting_on_first_use(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    photo: Path,
    random_weights_vgg16: Path,
    monkeypatch: pytest.MonkeyPatch,
    serve: Callable[[Path], str],
) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    data = imaging.encode_jpeg(Image.new("RGB", (90, 60), "navy"))
    (origin / "swirls.jpg").write_bytes(data)
    _only_painting(monkeypatch, f"{serve(origin)}/swirls.jpg", data)
    folder, out = tmp_path / "fresh-install-gallery", tmp_path / "out.jpg"
    code = cli.main(
        [
            "stylize", str(photo), "--style", "night-swirls", "--gallery-dir", str(folder),
            "--model", "vgg16", "--weights", str(random_weights_vgg16), "--size", "48",
            "--steps", "2", "--device", "cpu", "-o", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    assert (folder / "night-swirls.jpg").read_bytes() == data  # checksummed, stored, once
    err = capsys.readouterr().err
    assert "gallery" in err and "downloaded night-swirls" in err and f"wrote {out}" in err
    with Image.open(out) as image:
        assert max(image.size) == 48


def test_stylize_offline_says_how_to_point_at_a_gallery_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, photo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _only_painting(monkeypatch, f"http://127.0.0.1:{port}/swirls.jpg", b"never served")
    line = _fails(
        capsys,
        [
            "stylize", str(photo), "--style", "night-swirls", "--gallery-dir",
            str(tmp_path / "g"), "--weights", "random", "-q", "-o", str(tmp_path / "o.jpg"),
        ],
    )  # fmt: skip
    assert "could not download the painting 'night-swirls' (network error" in line
    assert "night-swirls.jpg" in line and "ORSAY_GALLERY_DIR" in line and "--gallery-dir" in line
    assert not (tmp_path / "o.jpg").exists()


# --- orsay gallery ----------------------------------------------------------------------------


def test_gallery_list_shows_every_painting(
    capsys: pytest.CaptureFixture[str], test_data: Path
) -> None:
    assert cli.main(["gallery", "--gallery-dir", str(test_data / "artworks"), "list"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["SLUG", "TITLE", "ARTIST", "YEAR", "PRESENT"]
    rows = [line for line in lines[1:] if line.strip() and not line.startswith(("12 of", "run"))]
    assert len(rows) == 12 and all(row.endswith("yes") for row in rows)
    assert "12 of 12 present" in out


def test_gallery_list_of_an_empty_dir_says_fetch(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["gallery", "--gallery-dir", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert "0 of 12 present" in out and "orsay gallery fetch" in out


def test_gallery_fetch_is_a_no_op_when_verified(
    capsys: pytest.CaptureFixture[str], test_data: Path
) -> None:
    argv = ["gallery", "--gallery-dir", str(test_data / "artworks"), "fetch", "-q"]
    assert cli.main(argv) == 0
    assert "already present and verified" in capsys.readouterr().out


def test_gallery_fetch_network_failure_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = ["gallery", "--gallery-dir", str(tmp_path), "fetch", "-q", "--retries", "1"]
    line = _fails(capsys, [*argv, "--mirror", f"http://127.0.0.1:{port}"])
    assert "12 of 12 paintings could not be fetched" in line and "network error" in line


def test_gallery_dir_flag_chooses_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["gallery", "--gallery-dir", str(tmp_path), "list"]) == 0
    assert f"present in {tmp_path}" in capsys.readouterr().out
    assert "ORSAY_GALLERY_DIR" not in os.environ  # an argument, not a process-wide setting


def test_gallery_sheet(tmp_path: Path, test_data: Path) -> None:
    out = tmp_path / "sheet.jpg"
    argv = ["gallery", "--gallery-dir", str(test_data / "artworks"), "sheet", "-o", str(out)]
    assert cli.main([*argv, "--columns", "6", "--thumb", "64"]) == 0
    with Image.open(out) as sheet:
        assert sheet.format == "JPEG" and sheet.width > 6 * 64 and sheet.height > 2 * 64
