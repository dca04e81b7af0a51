"""The Fluent catalogues: complete in every language, the same placeholders everywhere, plural
forms right by CLDR's rules, and a new language is just a new file."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from babel import Locale
from fluent.syntax import ast
from fluent.syntax.visitor import Visitor

from bot import texts
from bot.texts import LANGUAGES, RESOURCES, pick_language, t


def messages(lang: str) -> dict[str, ast.Message]:
    return {e.id.name: e for e in RESOURCES[lang].body if isinstance(e, ast.Message)}


class _Parts(Visitor):
    """The variables a message uses and the select expressions (plural choices) it has."""

    def __init__(self) -> None:
        super().__init__()
        self.variables: set[str] = set()
        self.selects: list[ast.SelectExpression] = []

    def visit_VariableReference(self, node: ast.VariableReference) -> None:
        self.variables.add(node.id.name)
        self.generic_visit(node)

    def visit_SelectExpression(self, node: ast.SelectExpression) -> None:
        self.selects.append(node)
        self.generic_visit(node)


def parts(message: ast.Message) -> _Parts:
    visitor = _Parts()
    visitor.visit(message)
    return visitor


def test_every_key_exists_in_every_language_and_no_other() -> None:
    assert LANGUAGES[0] == "en" and set(LANGUAGES) >= {"en", "ru"}
    reference = messages("en").keys()
    assert len(reference) > 60
    for lang in LANGUAGES:
        assert messages(lang).keys() == reference, lang


def test_placeholders_match_across_languages() -> None:
    english = {key: parts(m).variables for key, m in messages("en").items()}
    for lang in LANGUAGES:
        for key, message in messages(lang).items():
            assert parts(message).variables == english[key], (lang, key)


def test_plural_choices_cover_the_languages_plural_categories() -> None:
    """Each select on a number names every CLDR category of its language ("other" may be left
    to the default variant: in Russian it is only for fractions)."""
    for lang in LANGUAGES:
        categories = set(Locale.parse(lang).plural_form.tags) - {"other"}
        for key, message in messages(lang).items():
            for select in parts(message).selects:
                names = {v.key.name for v in select.variants if isinstance(v.key, ast.Identifier)}
                assert categories <= names, (lang, key, categories - names)


RU_PLURALS = {  # (key, variable) -> the expected wording for 1, 2, 5, 21
    ("styles_caption", "count"): ("1 картина.", "2 картины.", "5 картин.", "21 картина."),
    ("too_many_jobs", "limit"): ("1 картинка в", "2 картинки в", "5 картинок в", "21 картинка в"),
    ("stats", "failed"): ("1 ошибка", "2 ошибки", "5 ошибок", "21 ошибка"),
}
EN_PLURALS = {  # (key, variable) -> the expected wording for 1, 2
    ("styles_caption", "count"): ("1 painting.", "2 paintings."),
    ("too_many_jobs", "limit"): ("1 picture in", "2 pictures in"),
}
STATS = {"queued": 0, "running": 0, "workers": 1, "done": 0, "failed": 0, "wait": "…", "run": "…"}


def _values(key: str, variable: str, n: int) -> dict[str, object]:
    return {**(STATS if key == "stats" else {}), variable: n}


@pytest.mark.parametrize(("key", "variable"), list(RU_PLURALS))
def test_russian_plurals(key: str, variable: str) -> None:
    for n, expected in zip((1, 2, 5, 21), RU_PLURALS[key, variable], strict=True):
        assert expected in t("ru", key, **_values(key, variable, n)), (key, n)


@pytest.mark.parametrize(("key", "variable"), list(EN_PLURALS))
def test_english_plurals(key: str, variable: str) -> None:
    for n, expected in zip((1, 2), EN_PLURALS[key, variable], strict=True):
        assert expected in t("en", key, **_values(key, variable, n)), (key, n)


def test_every_plural_message_is_tested() -> None:
    for lang, table in (("ru", RU_PLURALS), ("en", EN_PLURALS)):
        plural = {key for key, m in messages(lang).items() if parts(m).selects}
        assert plural == {key for key, _ in table}, lang


def test_formatting_fallback_and_language_choice() -> None:
    assert t("ru", "queued", position=3, minutes=2) == "⏳ В очереди — №3, примерно 2 мин."
    assert t("de", "gone") == t("en", "gone")  # an unknown language reads English
    assert "\u2068" not in t("en", "caption", title="T", artist="A", seconds=3)  # no isolation
    assert t("en", "help").count("\n   Shortcut") == 1  # indentation inside a message is kept
    assert pick_language("ru") == "ru" and pick_language("uk-UA") == "ru"
    assert pick_language("de") == "en" and pick_language(None) == "en"
    with pytest.raises(KeyError):
        t("en", "no-such-message")


def test_a_new_language_is_a_new_file(tmp_path: Path) -> None:
    root = Path(str(texts.files("bot").joinpath("locales")))
    for name in ("en.ftl", "ru.ftl"):
        shutil.copy(root / name, tmp_path / name)
    (tmp_path / "de.ftl").write_text("gone = Dieser Knopf ist abgelaufen.\n", encoding="utf-8")
    bundles, _ = texts.load(tmp_path)
    assert set(bundles) == {"de", "en", "ru"}
    message = bundles["de"].get_message("gone")
    assert message.value is not None
    assert bundles["de"].format_pattern(message.value, {})[0] == "Dieser Knopf ist abgelaufen."
    (tmp_path / "xx.ftl").write_text("broken = { $\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"xx\.ftl: not valid Fluent"):
        texts.load(tmp_path)
