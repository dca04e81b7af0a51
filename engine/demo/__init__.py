"""The demo's own pictures, shipped inside the package so `orsay demo` works from a bare clone or
a wheel: a CC0 photo and a public-domain painting, each re-encoded small (see MANIFEST.tsv for
licence, source, author and exactly what was done to them)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
PHOTO = HERE / "chelsea-the-cat.jpg"
PAINTING = HERE / "van-gogh-starry-night.jpg"
PAINTING_TITLE = "The Starry Night — Vincent van Gogh"
MANIFEST = HERE / "MANIFEST.tsv"
