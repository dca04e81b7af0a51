"""engine.gallery: the packaged manifest, gallery folders, styles by slug, fetch, contact sheet."""

from __future__ import annotations

import csv
import hashlib
import io
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from engine import contact_sheet, gallery, imaging
from engine.errors import GalleryError, StyleNotFound
from engine.gallery import Painting
from engine.settings import load_settings
from tests.doubles.static_http import static_servers

REPO = Path(__file__).resolve().parents[2]
IDENTICAL = ("munch-the-scream", "sisley-flood-at-port-marly")
DOWNSCALED = "hokusai-great-wave-off-kanagawa"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as file:
        return list(csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE))


@pytest.fixture
def gallery_at(tmp_path: Path) -> Path:
    folder = tmp_path / "gallery"
    folder.mkdir()
    return folder


@pytest.fixture
def data_gallery(test_data: Path) -> Path:
    return test_data / "artworks"


@pytest.fixture
def serve() -> Iterator[Callable[[Path], str]]:
    """Serve a folder over HTTP on 127.0.0.1 (a real server, as fetch would meet online)."""
    with static_servers() as servers:
        yield servers.start


# --- manifest ---------------------------------------------------------------------------------


def test_packaged_manifest_is_complete_and_matches_the_downloads_table(test_data: Path) -> None:
    rows = _tsv(REPO / "engine" / "gallery_manifest.tsv")
    assert len(rows) >= 12
    assert len({r["slug"] for r in rows}) == len(rows)
    downloads = {Path(r["file"]).stem: r for r in _tsv(test_data / "artworks" / "DOWNLOADS.tsv")}
    for row in rows:
        assert all(row[k] for k in ("slug", "title", "artist", "year", "url", "license")), row
        assert re.fullmatch(r"[a-z0-9-]+", row["slug"])
        assert re.fullmatch(r"[0-9a-f]{64}", row["sha256"])
        assert row["url"].startswith("https://")
        assert "public domain" in row["license"]
        source = downloads[row["slug"]]
        assert (row["url"], row["sha256"], int(row["bytes"])) == (
            source["url"],
            source["sha256_of_download"],
            int(source["bytes_of_download"]),
        )
        assert (test_data / "artworks" / f"{row['slug']}.jpg").is_file()


def test_manifest_records_the_download_checksum_not_the_downscaled_copy(
    data_gallery: Path,
) -> None:
    paintings = {p.slug: p for p in gallery.list_paintings(data_gallery)}
    assert _sha(paintings[IDENTICAL[0]].path) == paintings[IDENTICAL[0]].sha256  # type: ignore[arg-type]
    assert _sha(data_gallery / f"{DOWNSCALED}.jpg") != paintings[DOWNSCALED].sha256
    # ... yet the folder's own MANIFEST.tsv vouches for its downscaled copy.
    assert all(gallery.is_valid(p) for p in paintings.values())


def test_gallery_module_does_not_import_torch() -> None:
    code = "import sys, engine.gallery, engine.imaging; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


# --- folders and lookup -----------------------------------------------------------------------


def test_gallery_dir_env_and_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ORSAY_GALLERY_DIR", raising=False)
    monkeypatch.setenv("ORSAY_DATA_DIR", str(tmp_path / "data"))
    assert load_settings().gallery == tmp_path / "data" / "gallery"
    monkeypatch.setenv("ORSAY_GALLERY_DIR", str(tmp_path / "mine"))
    assert load_settings().gallery == tmp_path / "mine"


def test_data_folder_lists_all_paintings_with_its_own_titles(data_gallery: Path) -> None:
    paintings = gallery.list_paintings(data_gallery, present_only=True)
    assert len(paintings) == 12
    by_slug = {p.slug: p for p in paintings}
    assert by_slug["turner-shipwreck-of-the-minotaur"].title.startswith("The Wreck of a Transport")
    assert by_slug["klimt-the-kiss"].artist == "Gustav Klimt"
    assert by_slug["klimt-the-kiss"].path == data_gallery / "klimt-the-kiss.jpg"


def test_empty_folder_lists_packaged_paintings_as_absent(gallery_at: Path) -> None:
    paintings = gallery.list_paintings(gallery_at)
    assert len(paintings) >= 12 and all(p.path is None for p in paintings)
    assert paintings[0].title == "The Starry Night"  # packaged (short) title
    assert gallery.list_paintings(gallery_at, present_only=True) == []


def test_operator_folder_with_manifest_and_loose_files(gallery_at: Path) -> None:
    Image.new("RGB", (40, 30), "orange").save(gallery_at / "my-sunset.png")
    Image.new("RGB", (40, 30), "navy").save(gallery_at / "Old_Harbour at NIGHT.jpg")
    (gallery_at / "notes.txt").write_text("not a painting")
    (gallery_at / "MANIFEST.tsv").write_text(
        "file\ttitle\tartist_or_author\tyear\tlicense_or_status\n"
        "my-sunset.png\tSunset over Orsay\tA. Operator\t2024\tCC0\n"
        "klimt-the-kiss.jpg\tLe Baiser\tKlimt\t1908\tpublic domain\n"
    )
    paintings = {p.slug: p for p in gallery.list_paintings(gallery_at)}
    assert paintings["my-sunset"].title == "Sunset over Orsay"
    assert paintings["my-sunset"].artist == "A. Operator"
    assert paintings["my-sunset"].license == "CC0"
    assert paintings["old-harbour-at-night"].title == "Old Harbour At NIGHT"
    assert paintings["klimt-the-kiss"].title == "Le Baiser"  # titles apply to packaged rows too
    assert paintings["klimt-the-kiss"].path is None
    assert "notes" not in paintings
    present = [p.slug for p in gallery.list_paintings(gallery_at, present_only=True)]
    assert sorted(present) == ["my-sunset", "old-harbour-at-night"]
    assert gallery.find("Old_Harbour at NIGHT.jpg", gallery_at).slug == "old-harbour-at-night"


def test_find_forgives_case_and_suffix_and_suggests(data_gallery: Path) -> None:
    assert gallery.find("Klimt-The-Kiss.JPG", data_gallery).slug == "klimt-the-kiss"
    assert gallery.find(" klimt-the-kiss.png", data_gallery).slug == "klimt-the-kiss"
    # ".kiss" is no image suffix: the whole name is the slug
    assert gallery.find("Klimt the.Kiss", data_gallery).slug == "klimt-the-kiss"
    with pytest.raises(StyleNotFound, match="did you mean van-gogh-starry-night"):
        gallery.find("starry", data_gallery)
    with pytest.raises(StyleNotFound) as caught:
        gallery.find("monet", data_gallery)
    assert "monet-impression-sunrise" in str(caught.value)
    assert "monet-water-lilies-1919" in str(caught.value)
    with pytest.raises(StyleNotFound, match=r"try van-gogh-starry-night.*orsay gallery list"):
        gallery.find("zzzz", data_gallery)


def test_load_style_by_slug_has_a_checksum_cache_key(data_gallery: Path) -> None:
    style = gallery.load_style("van-gogh-starry-night", weight=0.7, folder=data_gallery)
    digest = _sha(data_gallery / "van-gogh-starry-night.jpg")
    assert style.cache_key == f"van-gogh-starry-night:{digest[:16]}"
    assert style.weight == 0.7
    rows = {r["file"]: r for r in _tsv(data_gallery / "MANIFEST.tsv")}
    size = (
        int(rows["van-gogh-starry-night.jpg"]["width"]),
        int(rows["van-gogh-starry-night.jpg"]["height"]),
    )
    assert style.image.mode == "RGB" and style.image.size == size


def test_load_style_cache_key_changes_with_the_file(gallery_at: Path) -> None:
    target = gallery_at / "munch-the-scream.jpg"
    Image.new("RGB", (40, 40), "red").save(target)
    first = gallery.load_style("munch-the-scream", folder=gallery_at).cache_key
    Image.new("RGB", (40, 40), "blue").save(target)
    second = gallery.load_style("munch-the-scream", folder=gallery_at).cache_key
    assert first and second and first != second


def test_load_style_from_a_path_has_no_cache_key(tmp_path: Path, gallery_at: Path) -> None:
    upload = tmp_path / "upload.png"
    Image.new("RGBA", (50, 40), (0, 0, 0, 0)).save(upload)
    style = gallery.load_style(str(upload), folder=gallery_at)
    assert style.cache_key is None and style.weight == 1.0
    assert style.image.getpixel((5, 5)) == (255, 255, 255)
    with pytest.raises(StyleNotFound, match="does not exist"):
        gallery.load_style(str(tmp_path / "missing" / "style.jpg"), folder=gallery_at)


def test_load_style_of_an_absent_painting_says_fetch(gallery_at: Path) -> None:
    with pytest.raises(GalleryError, match="orsay gallery fetch"):
        gallery.load_style("klimt-the-kiss", folder=gallery_at)
    (gallery_at / "klimt-the-kiss.jpg").write_bytes(b"<html>oops</html>")
    with pytest.raises(GalleryError, match="not_an_image"):
        gallery.load_style("klimt-the-kiss", folder=gallery_at)


# --- fetch ------------------------------------------------------------------------------------


def _packaged(folder: Path, *slugs: str) -> list[Painting]:
    by_slug = {p.slug: p for p in gallery.list_paintings(folder)}
    return [by_slug[s] for s in slugs]


def test_fetch_from_a_mirror_verifies_and_skips_valid_files(
    gallery_at: Path, test_data: Path, serve: Callable[[Path], str]
) -> None:
    mirror = serve(test_data / "artworks")
    written = gallery.fetch(
        False, folder=gallery_at, mirror=mirror, paintings=_packaged(gallery_at, *IDENTICAL)
    )
    assert sorted(p.name for p in written) == sorted(f"{s}.jpg" for s in IDENTICAL)
    for slug in IDENTICAL:
        assert (gallery_at / f"{slug}.jpg").read_bytes() == (
            test_data / "artworks" / f"{slug}.jpg"
        ).read_bytes()
    assert not list(gallery_at.glob(".*.part"))
    assert (
        gallery.fetch(
            False, folder=gallery_at, mirror=mirror, paintings=_packaged(gallery_at, *IDENTICAL)
        )
        == []
    )
    # A damaged file is noticed by its checksum and replaced.
    (gallery_at / f"{IDENTICAL[0]}.jpg").write_bytes(b"damaged")
    again = gallery.fetch(
        False, folder=gallery_at, mirror=mirror, paintings=_packaged(gallery_at, *IDENTICAL)
    )
    assert [p.name for p in again] == [f"{IDENTICAL[0]}.jpg"]
    assert all(gallery.is_valid(p) for p in _packaged(gallery_at, *IDENTICAL))


def test_fetch_reports_checksum_mismatch_and_keeps_the_rest(
    gallery_at: Path, test_data: Path, serve: Callable[[Path], str]
) -> None:
    mirror = serve(test_data / "artworks")  # serves the downscaled copy, not the download
    with pytest.raises(GalleryError) as caught:
        gallery.fetch(
            False,
            folder=gallery_at,
            mirror=mirror,
            paintings=_packaged(gallery_at, DOWNSCALED, IDENTICAL[0]),
            backoff_s=0.01,
        )
    message = str(caught.value)
    assert "1 of 2" in message and DOWNSCALED in message and "checksum mismatch" in message
    assert not (gallery_at / f"{DOWNSCALED}.jpg").exists()
    assert (gallery_at / f"{IDENTICAL[0]}.jpg").is_file()


def test_fetch_follows_pinned_urls_and_downscales_large_downloads(
    gallery_at: Path, tmp_path: Path, serve: Callable[[Path], str]
) -> None:
    origin = tmp_path / "origin" / "deep" / "path"
    origin.mkdir(parents=True)
    big = Image.new("RGB", (2400, 1200), "teal")
    big.paste(Image.new("RGB", (600, 600), "yellow"), (900, 300))
    (origin / "original.jpg").write_bytes(imaging.encode_jpeg(big))
    data = (origin / "original.jpg").read_bytes()
    base = serve(tmp_path / "origin")
    painting = Painting(
        slug="big-one",
        title="Big",
        artist="Someone",
        year="1900",
        url=f"{base}/deep/path/original.jpg",
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        license="public domain",
    )
    [written] = gallery.fetch(True, folder=gallery_at, paintings=[painting])
    assert written == gallery_at / "big-one.jpg"
    with Image.open(written) as stored:
        assert stored.size == (1600, 800)
    assert gallery.is_valid(replace(painting, path=written))  # its checksum was recorded
    assert (
        gallery.fetch(False, folder=gallery_at, paintings=[replace(painting, path=written)]) == []
    )
    written.write_bytes(imaging.encode_jpeg(Image.new("RGB", (1600, 800))))
    assert not gallery.is_valid(replace(painting, path=written))


def test_fetch_http_and_network_errors(
    gallery_at: Path, tmp_path: Path, serve: Callable[[Path], str]
) -> None:
    base = serve(tmp_path)
    missing = replace(_packaged(gallery_at, IDENTICAL[0])[0], url=f"{base}/nothing-here.jpg")
    with pytest.raises(GalleryError, match="HTTP 404"):
        gallery.fetch(False, folder=gallery_at, paintings=[missing], backoff_s=0.01)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    unreachable = replace(missing, url=f"http://127.0.0.1:{closed_port}/x.jpg")
    with pytest.raises(GalleryError, match="network error"):
        gallery.fetch(
            False,
            folder=gallery_at,
            paintings=[unreachable],
            retries=2,
            backoff_s=0.01,
            timeout_s=2,
        )
    assert [p.name for p in gallery_at.iterdir()] == []


def _served_painting(
    tmp_path: Path, serve: Callable[[Path], str], monkeypatch: pytest.MonkeyPatch
) -> tuple[Painting, bytes]:
    """A packaged painting whose pinned URL is a local server, as the only one in the gallery."""
    origin = tmp_path / "origin"
    origin.mkdir()
    data = imaging.encode_jpeg(Image.new("RGB", (120, 80), "navy"))
    (origin / "swirls.jpg").write_bytes(data)
    painting = Painting(
        slug="night-swirls",
        title="Night Swirls",
        artist="Someone",
        year="1889",
        url=f"{serve(origin)}/swirls.jpg",
        sha256=hashlib.sha256(data).hexdigest(),
        bytes=len(data),
        license="public domain",
    )
    monkeypatch.setattr(gallery, "_packaged", lambda: (painting,))
    return painting, data


def test_fetch_missing_downloads_that_one_painting_once(
    gallery_at: Path, tmp_path: Path, serve: Callable[[Path], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    painting, data = _served_painting(tmp_path, serve, monkeypatch)
    at = gallery_at
    written = gallery.fetch_missing(painting.title, progress=True, folder=at)  # as find() finds
    assert written == gallery_at / f"{painting.slug}.jpg"
    assert written.read_bytes() == data
    assert gallery.load_style("night-swirls", folder=at).cache_key is not None
    assert gallery.fetch_missing("night-swirls", folder=at) is None  # present: nothing to do
    assert gallery.fetch_missing(str(written), folder=at) is None  # a file is a style as it is
    assert gallery.fetch_missing("no-such-painting", folder=at) is None  # load_style explains


def test_fetch_missing_checks_the_download_and_names_the_problem(
    gallery_at: Path, tmp_path: Path, serve: Callable[[Path], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    painting, _ = _served_painting(tmp_path, serve, monkeypatch)
    wrong = replace(painting, sha256="0" * 64)
    monkeypatch.setattr(gallery, "_packaged", lambda: (wrong,))
    with pytest.raises(GalleryError, match="checksum mismatch"):
        gallery.fetch_missing("night-swirls", progress=False, folder=gallery_at, backoff_s=0.01)
    assert list(gallery_at.iterdir()) == []


# --- contact sheet ----------------------------------------------------------------------------


def test_contact_sheet_layout_placeholders_and_captions(gallery_at: Path, test_data: Path) -> None:
    shutil.copy(test_data / "artworks" / "munch-the-scream.jpg", gallery_at)
    paintings = gallery.list_paintings(gallery_at)[:6]  # only The Scream (index 4) is present
    assert [p.path is not None for p in paintings] == [False] * 4 + [True, False]
    sheet = Image.open(io.BytesIO(contact_sheet.contact_sheet(paintings, columns=3, thumb=120)))
    assert sheet.format == "JPEG"
    pad, cell_w = 8, 128
    assert sheet.width == 3 * cell_w + pad
    cell_h = sheet.height // 2  # two rows of three
    # Missing files: gray placeholders; the present painting: not gray.
    center = (pad + 15, pad + 15)  # away from the "?" mark
    assert sheet.getpixel(center) == pytest.approx(contact_sheet.PLACEHOLDER, abs=6)
    scream = sheet.crop((pad + cell_w, pad + cell_h - 4, pad + cell_w + 120, pad + cell_h + 116))
    assert len(scream.getcolors(maxcolors=1 << 16) or []) > 500
    # Captions: dark ink below each thumbnail.
    caption = sheet.crop((pad, pad + 124, pad + 120, pad + 124 + 30)).convert("L")
    assert caption.getextrema()[0] < 80  # type: ignore[operator]


def test_contact_sheet_handles_unicode_and_many_columns(gallery_at: Path) -> None:
    Image.new("RGB", (64, 64), "red").save(gallery_at / "a.png")
    (gallery_at / "MANIFEST.tsv").write_text(
        "file\ttitle\tartist_or_author\tyear\na.png\tКрасный квадрат — étude\tМалевич\t1915\n"
    )
    [painting] = [p for p in gallery.list_paintings(gallery_at) if p.slug == "a"]
    sheet = Image.open(io.BytesIO(contact_sheet.contact_sheet([painting], columns=4, thumb=64)))
    assert sheet.width < 2 * 64 + 32  # one painting: one column, not four
