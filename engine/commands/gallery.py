"""`orsay gallery list|fetch|sheet`: see and download the paintings users can pick by name."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine import contact_sheet, gallery, imaging
from engine.errors import OrsayError
from engine.settings import Settings


def register(subparsers: Any, settings: Settings) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "gallery", help="list or download the gallery of paintings"
    )
    parser.add_argument(
        "--gallery-dir",
        type=Path,
        default=settings.gallery,
        help=f"use this folder as the gallery (default: {settings.gallery})",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", help="slug, title, artist, year, and whether present")
    listing.set_defaults(run=_guard(list_command))

    fetch = actions.add_parser("fetch", help="download missing or damaged paintings")
    fetch.add_argument(
        "--mirror", default=None, help="base URL serving <slug>.jpg files instead of the pins"
    )
    fetch.add_argument("--retries", type=int, default=3)
    fetch.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    fetch.set_defaults(run=_guard(fetch_command))

    sheet = actions.add_parser("sheet", help="write the numbered contact sheet the bot shows")
    sheet.add_argument("-o", "--output", type=Path, required=True)
    sheet.add_argument("--columns", type=int, default=4)
    sheet.add_argument("--thumb", type=int, default=256)
    sheet.set_defaults(run=_guard(sheet_command))


def _guard(command: Any) -> Any:
    """Print OrsayErrors as one line and exit 2, like `orsay stylize`."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return int(command(args))
        except OrsayError as error:
            print(f"orsay: error: {error}", file=sys.stderr)
            return 2

    return run


def format_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def _short(text: str, limit: int = 48) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def list_command(args: argparse.Namespace) -> int:
    paintings = gallery.list_paintings(args.gallery_dir)
    rows = [("SLUG", "TITLE", "ARTIST", "YEAR", "PRESENT")]
    rows += [
        (p.slug, _short(p.title), p.artist, p.year, "yes" if p.path is not None else "no")
        for p in paintings
    ]
    print(format_table(rows))
    present = sum(p.path is not None for p in paintings)
    print(f"\n{present} of {len(paintings)} present in {args.gallery_dir}")
    if present < len(paintings):
        print("run `orsay gallery fetch` to download the missing ones")
    return 0


def fetch_command(args: argparse.Namespace) -> int:
    where = args.gallery_dir
    written = gallery.fetch(
        progress=not args.quiet, folder=where, mirror=args.mirror, retries=args.retries
    )
    if written:
        print(f"downloaded {len(written)} paintings into {where}")
    else:
        print(f"all paintings already present and verified in {where}")
    return 0


def sheet_command(args: argparse.Namespace) -> int:
    imaging.output_format(args.output)
    data = contact_sheet.contact_sheet(
        gallery.list_paintings(args.gallery_dir, present_only=True),
        columns=args.columns,
        thumb=args.thumb,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    imaging.atomic_write(args.output, data)
    print(f"wrote {args.output}")
    return 0
