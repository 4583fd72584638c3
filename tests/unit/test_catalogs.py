"""The message catalogs: every English entry translated (not fuzzy), every English error template
(``N_`` in core/ and services/) translated into Chinese, and placeholders kept exactly."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from babel import Locale
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from mh_platform.web.extensions import SUPPORTED_LOCALES

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "mh_platform" / "web" / "translations"
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
# %(name)s, %d, %% and str.format-style {name}
PLACEHOLDER = re.compile(r"%\([A-Za-z_][A-Za-z0-9_]*\)[#0 +-]?\d*(?:\.\d+)?[sdifr]|%[sdifr%]|\{[A-Za-z0-9_]*\}")


def _catalog(locale: str):
    """The catalog Flask-Babel loads for a session language: its directory is named after the parsed
    locale (``zh_CN`` → ``zh_Hans_CN``)."""
    with (TRANSLATIONS / str(Locale.parse(locale)) / "LC_MESSAGES" / "messages.po").open("rb") as f:
        return read_po(f, locale=locale)


def _messages(locale: str) -> list:
    return [m for m in _catalog(locale) if m.id]


def _placeholders(text: str) -> Counter:
    return Counter(PLACEHOLDER.findall(text))


def _first(s: str | tuple) -> str:
    return s if isinstance(s, str) else s[0]


@pytest.mark.parametrize("locale", SUPPORTED_LOCALES)
def test_each_language_has_the_catalog_flask_babel_looks_for(locale):
    """Flask-Babel loads ``<dir>/<str(Locale.parse(lang))>/LC_MESSAGES``: a ``zh_CN`` directory was
    never read (the Chinese for the English error templates did not show)."""
    assert (TRANSLATIONS / str(Locale.parse(locale)) / "LC_MESSAGES" / "messages.po").is_file()


def test_placeholder_pattern():
    assert _placeholders("第 %(i)d / %(n)d 部分，已完成约 %(p)d%%") == Counter({"%(i)d": 1, "%(n)d": 1, "%(p)d": 1, "%%": 1})
    assert _placeholders("{x} and %(cols)s") == Counter({"{x}": 1, "%(cols)s": 1})


def test_every_english_entry_is_translated_and_not_fuzzy():
    msgs = _messages("en")
    empty = [_first(m.id) for m in msgs if not m.string or (isinstance(m.string, tuple) and not all(m.string))]
    fuzzy = [_first(m.id) for m in msgs if m.fuzzy]
    assert not empty, f"{len(empty)} en messages without English: {empty[:10]}"
    assert not fuzzy, f"fuzzy en messages: {fuzzy[:10]}"
    assert not [_first(m.id) for m in msgs if CJK.search(_first(m.string))], "Chinese left in an English msgstr"


@pytest.mark.parametrize("locale", ["en", "zh_CN"])
def test_placeholders_are_kept(locale):
    wrong = [(m.id, m.string) for m in _messages(locale)
             if m.string and _placeholders(_first(m.id)) != _placeholders(_first(m.string))]
    assert not wrong, wrong[:10]


def test_chinese_catalog_lists_every_message_and_translates_the_english_templates():
    zh, en = _messages("zh_CN"), _messages("en")
    assert {_first(m.id) for m in zh} == {_first(m.id) for m in en}
    assert not [m.id for m in zh if m.fuzzy]
    # a Chinese msgid needs no msgstr (gettext falls back to it); an English one needs Chinese
    english = [m for m in zh if not CJK.search(_first(m.id))]
    assert len(english) > 100
    untranslated = [m.id for m in english if not m.string or not CJK.search(_first(m.string))]
    assert not untranslated, untranslated[:10]


def test_every_error_template_of_core_and_services_is_in_the_catalogs():
    """``N_`` templates (core.i18n) reach pages through web.errors.error_text: each must be extracted
    (``make extract-messages``) and translated."""
    zh = {_first(m.id): m.string for m in _messages("zh_CN")}
    en = {_first(m.id): m.string for m in _messages("en")}
    found = 0
    for package in ("core", "services"):
        for _file, _line, message, _comments, _ctx in extract_from_dir(
                ROOT / "mh_platform" / package, method_map=[("**.py", "python")], keywords={"N_": None}):
            found += 1
            assert zh.get(message) and CJK.search(zh[message]), f"no Chinese for {message!r}"
            assert en.get(message), f"no English for {message!r}"
    assert found > 100


def test_the_listed_page_errors_are_marked():
    zh = {_first(m.id): m.string for m in _messages("zh_CN")}
    for template in ("a reason is required", "the note is too long", "grades must be chosen from 1 to 12",
                     "choose at least one unit", "the window must close after it opens",
                     "missing column(s): %(cols)s", "not a readable XLSX file", "the file is empty",
                     "%(field)s is required", "'other' needs a reason", "state the reason in a sentence"):
        assert CJK.search(zh.get(template) or ""), template


def test_crisis_help_keeps_every_contact():
    en = {_first(m.id): m.string for m in _messages("en")}
    assert en["你并不孤单"] == "You are not alone"
    assert "%(hotline)s" in en["需要帮助？心理援助热线 %(hotline)s；%(room)s"]
    assert en["全国心理援助热线："].startswith("National psychological assistance hotline")
