"""Everything the bot says, from the Fluent catalogues in `bot/locales/<lang>.ftl`.

Fluent (projectfluent.org) rather than gettext: the catalogues are plain text that is read as is,
with no compiled .mo files to build or commit, and CLDR plural rules (through Babel) are part of
the syntax, so Russian's one/few/many forms live in ru.ftl and never in Python. Each file is one
language; adding a language means adding a file (its messages fall back to English until done).

Porting a message from the old `{"key": "text {name}"}` dicts is mechanical: `key = text { $name }`,
a multi-line value goes on indented lines under `key =`. Placeables are not wrapped in Unicode
isolation marks (`use_isolating=False`): Telegram shows plain text and tests compare it.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

from fluent.runtime import FluentBundle, FluentResource
from fluent.syntax import ast

DEFAULT = "en"
# Speakers of these languages usually read Russian better than English (Telegram's language_code).
PREFER = {"uk": "ru", "be": "ru", "kk": "ru"}


def load(root: Traversable) -> tuple[dict[str, FluentBundle], dict[str, ast.Resource]]:
    """Every `<lang>.ftl` in `root`, by language code; a syntax error stops the bot at import."""
    bundles: dict[str, FluentBundle] = {}
    resources: dict[str, ast.Resource] = {}
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".ftl"):
            continue
        lang = entry.name.removesuffix(".ftl")
        resource = FluentResource(entry.read_text(encoding="utf-8"))
        junk = [e.content or "" for e in resource.body if isinstance(e, ast.Junk)]
        if junk:
            raise ValueError(f"{entry.name}: not valid Fluent: {junk[0].strip()[:80]!r}")
        bundle = FluentBundle([lang], use_isolating=False)
        bundle.add_resource(resource)
        bundles[lang], resources[lang] = bundle, resource
    return bundles, resources


BUNDLES, RESOURCES = load(files("bot").joinpath("locales"))
LANGUAGES = (DEFAULT, *sorted(set(BUNDLES) - {DEFAULT}))  # English first, as the fallback


def pick_language(code: str | None) -> str:
    """The catalogue for Telegram's `language_code` ("uk-UA" → "uk" …), else English."""
    base = (code or "").split("-")[0].lower()
    base = base if base in BUNDLES else PREFER.get(base, DEFAULT)
    return base if base in BUNDLES else DEFAULT


def t(lang: str, key: str, **values: Any) -> str:
    """The message `key` in `lang` (English where that language lacks it), with `values`
    filled in; numbers choose plural forms by the language's CLDR rules."""
    bundle = BUNDLES.get(lang)
    if bundle is None or not bundle.has_message(key):
        bundle = BUNDLES[DEFAULT]
    message = bundle.get_message(key)  # KeyError for a key no catalogue has
    if message.value is None:
        raise KeyError(key)
    text, errors = bundle.format_pattern(message.value, values)
    if errors:
        raise ValueError(f"{lang}/{key}: {errors[0]}")
    return str(text)
