"""Inline keyboards and their callback data. Callback data is short, self-describing and at most
64 bytes (Telegram's limit), and names things that outlive the process (gallery slugs, job ids),
so a button pressed after a restart still means the same thing."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.store import QUALITIES, STRENGTHS, UserPrefs
from bot.texts import LANGUAGES, t

PAGE_SIZE = 6
MAX_CALLBACK_BYTES = 64


class PaintingLike(Protocol):
    slug: str
    title: str
    artist: str


def data(*parts: object) -> str:
    """Join parts into callback data, refusing anything Telegram would reject."""
    text = ":".join(str(p) for p in parts)
    if len(text.encode()) > MAX_CALLBACK_BYTES:
        raise ValueError(f"callback data over {MAX_CALLBACK_BYTES} bytes: {text!r}")
    return text


def style_data(slug: str) -> str:
    """`st:<slug>`, or `sh:<hash>` for a slug too long to fit (resolved by `slug_matches`)."""
    if len(f"st:{slug}".encode()) <= MAX_CALLBACK_BYTES:
        return data("st", slug)
    return data("sh", hashlib.sha1(slug.encode()).hexdigest()[:16])


def slug_matches(kind: str, value: str, slug: str) -> bool:
    if kind == "st":
        return value == slug
    return hashlib.sha1(slug.encode()).hexdigest()[:16] == value


def _button(text: str, *parts: object) -> InlineKeyboardButton:
    return InlineKeyboardButton(text, callback_data=data(*parts))


def styles(lang: str, paintings: Sequence[PaintingLike], page: int = 0) -> InlineKeyboardMarkup:
    pages = max(1, -(-len(paintings) // PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    chunk = paintings[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    rows = [
        [InlineKeyboardButton(f"{p.title} — {p.artist}", callback_data=style_data(p.slug))]
        for p in chunk
    ]
    if pages > 1:
        nav = []
        if page > 0:
            nav.append(_button(t(lang, "prev"), "pg", page - 1))
        nav.append(_button(f"{page + 1}/{pages}", "pg", page))
        if page < pages - 1:
            nav.append(_button(t(lang, "next"), "pg", page + 1))
        rows.append(nav)
    rows.append([_button(t(lang, "surprise"), "rnd"), _button(t(lang, "own_style"), "own")])
    rows.append([_button(t(lang, "settings"), "cfg")])
    return InlineKeyboardMarkup(rows)


def _flag(lang: str, on: bool) -> str:
    return t(lang, "on" if on else "off")


def settings(
    lang: str, prefs: UserPrefs, qualities: Sequence[str] = QUALITIES
) -> InlineKeyboardMarkup:
    """The settings keyboard; `qualities`: those offered here (the print quality where the
    operator enabled it, engine.settings.Settings.qualities)."""

    def mark(current: str, value: str, key: str) -> str:
        return ("• " if current == value else "") + t(lang, key)

    quality = [_button(mark(prefs.quality, q, f"q_{q}"), "set", "q", q) for q in qualities]
    strength = [_button(mark(prefs.strength, s, f"s_{s}"), "set", "s", s) for s in STRENGTHS]
    return InlineKeyboardMarkup(
        [
            quality,
            strength,
            [_button(t(lang, "keep_colors", value=_flag(lang, prefs.keep_colors)), "set", "c")],
            [_button(t(lang, "as_file", value=_flag(lang, prefs.as_file)), "set", "f")],
            [_button(t(lang, "back"), "pg", 0)],
        ]
    )


def languages() -> InlineKeyboardMarkup:
    """One button per catalogue, each named in its own language."""
    buttons = [_button(t(code, "lang_name"), "lang", code) for code in LANGUAGES]
    return InlineKeyboardMarkup([buttons])


def cancel(lang: str, job_id: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup([[_button(t(lang, "cancel"), "x", job_id)]])


def result(lang: str, keep_colors: bool) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [_button(t(lang, "another_style"), "again")],
            [_button(t(lang, "gentler"), "re", "-"), _button(t(lang, "stronger"), "re", "+")],
            [_button(t(lang, "keep_colors_btn", value=_flag(lang, not keep_colors)), "re", "c")],
        ]
    )


# What a failed job's message offers, by reason code: only what can change the outcome. A
# transient fault on our side (or a painting that failed to load) may pass, so trying again helps;
# a timeout may not recur in the fast quality; a painting gone from the gallery needs another one.
# Broken weights, a picture the painter refused or a job that took its worker down repeatedly
# would fail again the same way, so those messages offer nothing to press.
FAILURE_ACTIONS = {
    "painter_error": ("try_again", ("re", "r")),
    "gallery_error": ("try_again", ("re", "r")),
    "timeout": ("try_fast", ("re", "f")),
    "style_not_found": ("another_style", ("again",)),
}


def failure(lang: str, reason: str) -> InlineKeyboardMarkup | None:
    """The button under a failure message, if pressing something could help (FAILURE_ACTIONS);
    `reason` is a code the bot knows (bot.follow.reason_code)."""
    action = FAILURE_ACTIONS.get(reason)
    if action is None:
        return None
    key, parts = action
    return InlineKeyboardMarkup([[_button(t(lang, key), *parts)]])
