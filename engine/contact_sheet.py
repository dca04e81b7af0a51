"""The numbered contact sheet of the gallery that `/styles` and `orsay gallery sheet` show: one
thumbnail per painting (a grey placeholder for one not downloaded yet) with its number, title and
artist, so a user can pick by number. Kept apart from engine.gallery, which finds and fetches the
paintings; this module only draws them. No torch import (the bot renders it).
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterator, Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from engine import imaging
from engine.errors import ImageError
from engine.gallery import Painting

BACKGROUND = (250, 248, 244)
PLACEHOLDER = (190, 190, 190)
INK = (30, 30, 30)
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def contact_sheet(paintings: Sequence[Painting], *, columns: int = 4, thumb: int = 256) -> bytes:
    """One JPEG of numbered thumbnails captioned "N. Title — Artist", for the bot's /styles.

    Missing or unreadable files get a gray placeholder, so a half-fetched gallery still renders.
    Cached per (paintings and their files, layout)."""
    key = tuple((p, _stamp(p.path)) for p in paintings)
    return _contact_sheet(key, max(1, columns), max(32, thumb))


def _stamp(path: Path | None) -> tuple[int, int] | None:
    try:
        stat = path.stat() if path is not None else None
    except OSError:
        return None
    return (stat.st_size, stat.st_mtime_ns) if stat else None


def _lines(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int) -> Iterator[str]:
    line = ""
    for word in text.split():
        attempt = f"{line} {word}".strip()
        if line and draw.textlength(attempt, font=font) > width:
            yield line
            line = word
        else:
            line = attempt
    if line:
        yield line


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int, limit: int) -> list[str]:
    lines = list(_lines(draw, text, font, width))
    if len(lines) <= limit:
        return lines
    last = lines[limit - 1]
    while last and draw.textlength(last + "…", font=font) > width:
        last = last[:-1].rstrip()
    return [*lines[: limit - 1], last + "…"]


@functools.cache
def _font(size: int) -> Font:
    """DejaVu Sans when the system has it (accents, Cyrillic, dashes), else Pillow's built-in
    scalable font, which only covers ASCII (see `_drawable`)."""
    try:
        return ImageFont.truetype("DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def _drawable(text: str, font: Font) -> str:
    """Replace characters the font would draw as a box: dashes by '-', accented letters by
    their base letter, anything else by '?'."""
    tofu = bytes(font.getmask("\uffff"))
    out = []
    for char in text:
        if char.isspace() or bytes(font.getmask(char)) != tofu:
            out.append(char)
        elif unicodedata.category(char) == "Pd":
            out.append("-")
        else:
            base = unicodedata.normalize("NFKD", char).encode("ascii", "ignore").decode()
            out.append(base or "?")
    return "".join(out)


def _thumbnail(path: Path | None, thumb: int) -> Image.Image | None:
    if path is None:
        return None
    try:
        image = imaging.load_image(path)
    except ImageError:
        return None
    image.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
    return image


@functools.lru_cache(maxsize=8)
def _contact_sheet(
    key: tuple[tuple[Painting, tuple[int, int] | None], ...], columns: int, thumb: int
) -> bytes:
    paintings = [painting for painting, _ in key]
    columns = min(columns, max(len(paintings), 1))
    rows = max(1, -(-len(paintings) // columns))
    pad = max(8, thumb // 16)
    font_size = max(10, thumb // 14)
    font = _font(font_size)
    line_height = int(font_size * 1.25)
    caption_lines = 3
    cell_w = thumb + pad
    cell_h = thumb + pad // 2 + caption_lines * line_height + pad
    sheet = Image.new("RGB", (columns * cell_w + pad, rows * cell_h + pad), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for index, painting in enumerate(paintings):
        x = pad + (index % columns) * cell_w
        y = pad + (index // columns) * cell_h
        image = _thumbnail(painting.path, thumb)
        if image is None:
            draw.rectangle((x, y, x + thumb - 1, y + thumb - 1), fill=PLACEHOLDER)
            draw.text((x + thumb // 2, y + thumb // 2), "?", fill=INK, font=font, anchor="mm")
        else:
            sheet.paste(image, (x + (thumb - image.width) // 2, y + (thumb - image.height) // 2))
        caption = _drawable(f"{index + 1}. {painting.caption}", font)
        top = y + thumb + pad // 2
        for n, line in enumerate(_wrap(draw, caption, font, thumb, caption_lines)):
            draw.text((x, top + n * line_height), line, fill=INK, font=font)
    return imaging.encode_jpeg(sheet, quality=85)
