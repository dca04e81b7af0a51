"""The gallery: public-domain paintings people pick by name instead of uploading a style.

The package ships only a manifest (slug, title, artist, year, pinned URL, sha256 and size of the
download, license note); `fetch` downloads the images into the gallery folder every function here
takes as `folder` (`Settings.gallery`: `<data dir>/gallery`, or the operator's own folder named by
`ORSAY_GALLERY_DIR`); its `MANIFEST.tsv` (columns `file`, `title`,
`artist_or_author`, `year`, ...) supplies titles, and loose images there join the gallery too.
No torch import here: the bot lists and renders the gallery without loading the engine.
"""

from __future__ import annotations

import csv
import difflib
import functools
import hashlib
import io
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image

from engine import imaging
from engine.errors import GalleryError, ImageError, StyleNotFound
from engine.options import StyleInput

MANIFEST = Path(__file__).with_name("gallery_manifest.tsv")  # package data, next to this file
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
MAX_SIDE = 1600  # larger downloads are downscaled after verification; styles never need more
FOLDER_MANIFEST = "MANIFEST.tsv"
VERIFIED = ".verified.tsv"  # file -> sha256 of files fetch wrote after downscaling a download
CHUNK = 1 << 16


@dataclass(frozen=True)
class Painting:
    slug: str
    title: str
    artist: str
    year: str
    url: str
    sha256: str  # of the download (a downscaled copy on disk has another checksum)
    bytes: int
    license: str
    path: Path | None = None  # the image in the gallery folder, when present

    @property
    def caption(self) -> str:
        return f"{self.title} — {self.artist}" if self.artist else self.title


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _read_tsv(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE)
    return [{k: (v or "").strip() for k, v in row.items() if k} for row in reader]


@functools.cache
def _packaged() -> tuple[Painting, ...]:
    text = MANIFEST.read_text("utf-8")
    return tuple(
        Painting(
            slug=row["slug"],
            title=row["title"],
            artist=row["artist"],
            year=row["year"],
            url=row["url"],
            sha256=row["sha256"],
            bytes=int(row["bytes"]),
            license=row["license"],
        )
        for row in _read_tsv(text)
    )


def _folder_files(folder: Path) -> dict[str, Path]:
    """slug -> image file in `folder` (first match wins, suffixes in IMAGE_SUFFIXES order)."""
    if not folder.is_dir():
        return {}
    files = sorted(
        (p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
        key=lambda p: (p.stem, IMAGE_SUFFIXES.index(p.suffix.lower())),
    )
    found: dict[str, Path] = {}
    for path in files:
        if not path.name.startswith("."):
            found.setdefault(slugify(path.stem), path)
    return found


def _folder_manifest(folder: Path) -> dict[str, dict[str, str]]:
    path = folder / FOLDER_MANIFEST
    if not path.is_file():
        return {}
    try:
        rows = _read_tsv(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise GalleryError(f"the gallery folder's {FOLDER_MANIFEST} is unreadable") from error
    return {slugify(Path(row["file"]).stem): row for row in rows if row.get("file")}


def _title_from_name(stem: str) -> str:
    words = re.sub(r"[-_]+", " ", stem).split()
    return " ".join(w if w.isupper() else w.capitalize() for w in words) or stem


def list_paintings(folder: Path, *, present_only: bool = False) -> list[Painting]:
    """The packaged paintings (in manifest order), then paintings only the gallery folder knows.

    A folder `MANIFEST.tsv` overrides titles/artists/years; images without any manifest row get
    a title made from their file name. `present_only` drops paintings not downloaded yet.
    Listing never writes: a missing folder is an empty one."""
    files = _folder_files(folder)
    local = _folder_manifest(folder)
    paintings: list[Painting] = []
    for packaged in _packaged():
        row = local.get(packaged.slug, {})
        paintings.append(
            replace(
                packaged,
                title=row.get("title") or packaged.title,
                artist=row.get("artist_or_author") or row.get("artist") or packaged.artist,
                year=row.get("year") or packaged.year,
                path=files.get(packaged.slug),
            )
        )
    known = {p.slug for p in paintings}
    for slug, path in files.items():
        if slug in known:
            continue
        row = local.get(slug, {})
        paintings.append(
            Painting(
                slug=slug,
                title=row.get("title") or _title_from_name(path.stem),
                artist=row.get("artist_or_author") or row.get("artist") or "",
                year=row.get("year", ""),
                url="",
                sha256="",
                bytes=0,
                license=row.get("license_or_status") or row.get("license") or "",
                path=path,
            )
        )
    return [p for p in paintings if p.path is not None] if present_only else paintings


def _is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def find(slug: str, folder: Path) -> Painting:
    """The painting called `slug` (case and file suffix forgiven), or StyleNotFound that says
    what exists."""
    name = slug.strip()
    wanted = slugify(name[: -len(Path(name).suffix)] if _is_image_name(name) else name)
    paintings = list_paintings(folder)
    for painting in paintings:
        if painting.slug == wanted:
            return painting
    slugs = [p.slug for p in paintings]
    words = [w for w in wanted.split("-") if len(w) > 2]
    containing = [s for s in slugs if words and all(w in s for w in words)]
    close = (containing + difflib.get_close_matches(wanted, slugs, n=3, cutoff=0.5))[:3]
    close = list(dict.fromkeys(close))
    suggestions = close or slugs[:5]
    hint = "did you mean " if close else "try "
    more = "" if close or len(slugs) <= 5 else f" (and {len(slugs) - 5} more: orsay gallery list)"
    raise StyleNotFound(
        f"no painting called {slug!r} in the gallery; {hint}{', '.join(suggestions)}{more}"
    )


def _sha256(path: Path) -> str:
    stat = path.stat()
    return _sha256_cached(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=256)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def load_style(slug_or_path: str, weight: float = 1.0, *, folder: Path) -> StyleInput:
    """A style for the painter: an existing image file (uploaded or local; no cache key), or a
    gallery painting with `cache_key = "<slug>:<sha256 of its file>[:16]"` so the engine can
    reuse its style targets until the file changes."""
    candidate = Path(slug_or_path).expanduser()
    if candidate.is_file():
        return StyleInput(image=imaging.load_image(candidate), weight=weight)
    if candidate.suffix.lower() in IMAGE_SUFFIXES and len(candidate.parts) > 1:
        raise StyleNotFound(f"style file {candidate.name!r} does not exist")
    painting = find(slug_or_path, folder)
    if painting.path is None or not painting.path.is_file():
        raise GalleryError(
            f"the painting {painting.slug!r} is not downloaded yet; run `orsay gallery fetch`"
        )
    try:
        image = imaging.load_image(painting.path)
    except ImageError as error:
        raise GalleryError(
            f"the gallery file for {painting.slug!r} is unusable ({error.code}); "
            "run `orsay gallery fetch` to repair it"
        ) from error
    key = f"{painting.slug}:{_sha256(painting.path)[:16]}"
    return StyleInput(image=image, weight=weight, cache_key=key)


# --- fetching ---------------------------------------------------------------------------------


def _verified(folder: Path) -> dict[str, str]:
    path = folder / VERIFIED
    if not path.is_file():
        return {}
    return {row["file"]: row["sha256"] for row in _read_tsv(path.read_text("utf-8"))}


def _record_verified(folder: Path, name: str, digest: str) -> None:
    rows = _verified(folder)
    rows[name] = digest
    lines = ["file\tsha256"] + [f"{k}\t{v}" for k, v in sorted(rows.items())]
    imaging.atomic_write(folder / VERIFIED, ("\n".join(lines) + "\n").encode())


def is_valid(painting: Painting) -> bool:
    """Present and intact: the file is the verified download, or the downscaled copy fetch (or
    the folder's own MANIFEST.tsv) vouches for."""
    if painting.path is None or not painting.path.is_file():
        return False
    if not painting.sha256:  # an operator's own painting: nothing to check against
        return True
    digest = _sha256(painting.path)
    folder = painting.path.parent
    trusted = {painting.sha256, _verified(folder).get(painting.path.name)}
    trusted.add(_folder_manifest(folder).get(painting.slug, {}).get("sha256"))
    return digest in trusted


def _download(url: str, timeout: float, bar: _Bar) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "orsay-gallery/1"})
    chunks: list[bytes] = []
    with urllib.request.urlopen(request, timeout=timeout) as response:
        while chunk := response.read(CHUNK):
            chunks.append(chunk)
            bar.update(len(chunk))
    return b"".join(chunks)


class _Bar:
    """A tqdm bar over all bytes to download, or nothing when progress is off."""

    def __init__(self, total: int, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="B", unit_scale=True, desc="gallery")

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _downscaled(data: bytes) -> bytes | None:
    """A ≤ MAX_SIDE JPEG copy when the download is larger (as ../shared's copies were made)."""
    image = imaging.load_image(data)
    if max(image.size) <= MAX_SIDE:
        return None
    image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return imaging.encode_jpeg(image, quality=92)


def _source_url(painting: Painting, mirror: str | None) -> str:
    if mirror is None:
        return painting.url
    suffix = Path(painting.url).suffix or ".jpg"
    return f"{mirror.rstrip('/')}/{painting.slug}{suffix}"


def fetch(
    progress: bool = True,
    *,
    folder: Path,
    mirror: str | None = None,
    paintings: Sequence[Painting] | None = None,
    retries: int = 3,
    backoff_s: float = 1.0,
    timeout_s: float = 60.0,
) -> list[Path]:
    """Download every packaged painting that is missing or fails its checksum into `folder`.

    `mirror` replaces the pinned URLs by `<mirror>/<slug><suffix>` (a flat copy of the gallery,
    e.g. an operator's server). Each download is checked against the manifest's sha256 and
    size, retried with backoff, downscaled to MAX_SIDE if larger, and renamed into place
    atomically. Returns the files written; raises GalleryError naming every painting that
    could not be fetched (the others are kept)."""
    chosen = [p for p in (paintings if paintings is not None else list_paintings(folder)) if p.url]
    todo = [p for p in chosen if not is_valid(p)]
    if not todo:
        return []
    _create(folder)
    bar = _Bar(sum(p.bytes for p in todo), progress)
    written: list[Path] = []
    failures: dict[str, list[str]] = {}  # problem -> slugs, so one outage is one line
    try:
        for painting in todo:
            bar.note(painting.slug)
            try:
                written.append(
                    _fetch_one(painting, folder, mirror, retries, backoff_s, timeout_s, bar)
                )
            except GalleryError as error:
                failures.setdefault(str(error), []).append(painting.slug)
    finally:
        bar.close()
    if failures:
        count = sum(len(slugs) for slugs in failures.values())
        details = "; ".join(f"{problem}: {', '.join(slugs)}" for problem, slugs in failures.items())
        raise GalleryError(f"{count} of {len(todo)} paintings could not be fetched — {details}")
    return written


def _create(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise GalleryError("cannot create the gallery folder (check ORSAY_GALLERY_DIR)") from error


def fetch_missing(
    slug_or_path: str,
    progress: bool = True,
    *,
    folder: Path,
    retries: int = 2,
    backoff_s: float = 1.0,
    timeout_s: float = 20.0,
) -> Path | None:
    """Download the one packaged painting `slug_or_path` names when it is not on disk yet, so a
    first `orsay stylize --style SLUG` needs no `orsay gallery fetch` of the whole gallery.

    Checked like `fetch` (sha256 and size, retries, downscaled if larger). Returns the file
    written, or None when there is nothing to fetch: an image file path, a name the gallery
    does not know (load_style explains that), a painting already present (even one that fails
    its checksum: it may be an operator's read-only folder; `orsay gallery fetch` repairs), or
    one without a URL. Raises GalleryError with the download's problem in one line."""
    candidate = Path(slug_or_path).expanduser()
    if candidate.is_file() or (
        candidate.suffix.lower() in IMAGE_SUFFIXES and len(candidate.parts) > 1
    ):
        return None
    try:
        painting = find(slug_or_path, folder)
    except StyleNotFound:
        return None
    if painting.path is not None or not painting.url:
        return None
    _create(folder)
    bar = _Bar(painting.bytes, progress)
    bar.note(painting.slug)
    try:
        return _fetch_one(painting, folder, None, retries, backoff_s, timeout_s, bar)
    finally:
        bar.close()


def _fetch_one(
    painting: Painting,
    folder: Path,
    mirror: str | None,
    retries: int,
    backoff_s: float,
    timeout_s: float,
    bar: _Bar,
) -> Path:
    url = _source_url(painting, mirror)
    problem = "no attempt made"
    for attempt in range(max(retries, 1)):
        if attempt:
            time.sleep(backoff_s * 2 ** (attempt - 1))
        try:
            data = _download(url, timeout_s, bar)
        except urllib.error.HTTPError as error:
            problem = f"HTTP {error.code}"
            if 400 <= error.code < 500 and error.code != 429:
                break  # the file is not there; asking again will not help
            continue
        except (urllib.error.URLError, OSError, TimeoutError) as error:
            reason = getattr(error, "reason", None) or type(error).__name__
            problem = f"network error ({reason})"
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != painting.sha256 or len(data) != painting.bytes:
            problem = (
                f"checksum mismatch (expected {painting.sha256[:12]}… / {painting.bytes} bytes, "
                f"got {digest[:12]}… / {len(data)} bytes)"
            )
            continue
        return _store(painting, folder, url, data)
    raise GalleryError(problem)


def _store(painting: Painting, folder: Path, url: str, data: bytes) -> Path:
    suffix = Path(url).suffix.lower()
    target = folder / f"{painting.slug}{suffix if suffix in IMAGE_SUFFIXES else '.jpg'}"
    try:
        smaller = _downscaled(data)
    except ImageError as error:
        raise GalleryError("the verified download is not an image") from error
    if smaller is not None:
        target = target.with_suffix(".jpg")
        imaging.atomic_write(target, smaller)
        _record_verified(folder, target.name, hashlib.sha256(smaller).hexdigest())
    else:
        imaging.atomic_write(target, data)
    return target
