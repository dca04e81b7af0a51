"""Make tests/data/: the small pictures the test suite uses, copied from the shared data folder.

The suite must pass in a bare clone, so the paintings and photos it reads live in the repository.
Files under KEEP_AS_IS are copied byte for byte: the gallery tests need two paintings whose bytes
are the pinned download (their sha256 is the packaged manifest's), and the two photos are small
already. The other paintings are downscaled to DOWNSCALED_SIDE px (Pillow Lanczos, JPEG quality
JPEG_QUALITY): 1.1 MB for the whole folder instead of 5.4 MB. Each folder gets a MANIFEST.tsv
with the licence, the source and what was done, and the sha256 the gallery checks; the
artworks folder also gets the shared DOWNLOADS.tsv (pinned URLs and checksums of the downloads).

    .venv/bin/python scripts/make_test_data.py            # ORSAY_SHARED, else ../shared
    .venv/bin/python scripts/make_test_data.py --shared DIR

Only this script reads the shared folder; the tests read tests/data/.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import shutil
from pathlib import Path

from PIL import Image

from engine.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data"
PAINTINGS = (
    "van-gogh-starry-night.jpg",
    "hokusai-great-wave-off-kanagawa.jpg",
    "monet-impression-sunrise.jpg",
    "monet-water-lilies-1919.jpg",
    "munch-the-scream.jpg",
    "kandinsky-composition-vii.jpg",
    "klimt-the-kiss.jpg",
    "seurat-sunday-afternoon-grande-jatte.jpg",
    "turner-shipwreck-of-the-minotaur.jpg",
    "turner-fighting-temeraire.jpg",
    "sisley-flood-at-port-marly.jpg",
    "van-gogh-wheatfield-with-crows.jpg",
)
PHOTOS = ("chelsea-the-cat.png", "grace-hopper.jpg")
# byte-identical: the download itself (gallery checksum tests) or small enough already
KEEP_AS_IS = {
    "munch-the-scream.jpg",
    "sisley-flood-at-port-marly.jpg",
    "chelsea-the-cat.png",
    "grace-hopper.jpg",
}
DOWNSCALED_SIDE = 384  # the largest size any test paints at is 96 px; the contact sheet 120 px
JPEG_QUALITY = 85
COLUMNS = (
    "file",
    "title",
    "artist_or_author",
    "year",
    "license_or_status",
    "source",
    "what_we_did",
    "width",
    "height",
    "bytes",
    "sha256",
)


def _rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as file:
        reader = csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE)
        return {row["file"]: row for row in reader}


def _downscaled(path: Path) -> tuple[bytes, str]:
    with Image.open(path) as image:
        image.load()
        source_size = image.size
        small = image.convert("RGB")
    small.thumbnail((DOWNSCALED_SIDE, DOWNSCALED_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
    what = (
        f"downscaled {source_size[0]}x{source_size[1]} -> {small.width}x{small.height} "
        f"(Pillow Lanczos), JPEG quality {JPEG_QUALITY}, optimize"
    )
    return buffer.getvalue(), what


def copy_folder(shared: Path, kind: str, names: tuple[str, ...]) -> None:
    source_rows = _rows(shared / kind / "MANIFEST.tsv")
    target = OUT / kind
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    lines = ["\t".join(COLUMNS)]
    for name in names:
        row = dict(source_rows[name])
        source = shared / kind / name
        original = source.read_bytes()
        if name in KEEP_AS_IS:
            data, what = original, "byte-identical copy of the shared file"
        else:
            data, what = _downscaled(source)
        (target / name).write_bytes(data)
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
        row.update(
            source=f"{row['source']} (shared copy: {len(original)} bytes, sha256 "
            f"{hashlib.sha256(original).hexdigest()})",
            what_we_did=what,
            width=str(width),
            height=str(height),
            bytes=str(len(data)),
            sha256=hashlib.sha256(data).hexdigest(),
        )
        lines.append("\t".join(row[c] for c in COLUMNS))
    (target / "MANIFEST.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=load_settings().shared_dir)
    shared = parser.parse_args().shared
    if not (shared / "artworks").is_dir():
        raise SystemExit(f"shared data not found at {shared} (set ORSAY_SHARED or --shared)")
    copy_folder(shared, "artworks", PAINTINGS)
    copy_folder(shared, "photos", PHOTOS)
    shutil.copyfile(shared / "artworks" / "DOWNLOADS.tsv", OUT / "artworks" / "DOWNLOADS.tsv")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
