"""Every shipped definition carries its licence, copyright line and citation; text only where allowed."""

from __future__ import annotations

import tomllib

import pytest

from mh_platform.core.instruments import DEFAULT_DIR, instrument_files, load_file

FILES = instrument_files(DEFAULT_DIR)


def test_definitions_are_shipped():
    ids = {p.stem for p in FILES}
    assert {"phq9", "gad7", "asq", "who5", "phq_a"} <= ids


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_licence_copyright_and_citation_present(path):
    # read the raw TOML too, so the check does not depend on the loader's defaults
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    lic = raw.get("licence", {})
    for key in ("name", "terms", "copyright", "citation"):
        assert isinstance(lic.get(key), str) and len(lic[key].strip()) >= 5, f"{path.name}: licence.{key} missing"
    assert isinstance(lic.get("ship_text"), bool), f"{path.name}: licence.ship_text missing"
    inst = load_file(path)
    assert inst.licence.copyright and inst.licence.citation


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_item_text_only_where_the_licence_allows(path):
    inst = load_file(path)
    has_text = any(it.en or it.zh or any(o.en or o.zh for o in it.options) for it in inst.items)
    if not inst.licence.ship_text:
        assert not has_text, f"{path.name}: licence forbids shipping text"
        assert inst.licence.ship_text_reason, f"{path.name}: say why no text is shipped"
    else:
        assert all(it.en for it in inst.items), f"{path.name}: every item needs its English text"


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_cutoff_set_has_citation_and_population(path):
    inst = load_file(path)
    for c in inst.cutoff_sets:
        assert c.citation.strip() and c.population.strip(), f"{path.name}: cut-off set {c.id}"


def test_sdq_ships_no_item_text():
    sdq = DEFAULT_DIR / "sdq.toml"
    assert load_file(sdq).licence.ship_text is False


def test_loader_rejects_a_file_without_licence(tmp_path):
    from mh_platform.core.instruments import InstrumentError

    text = (DEFAULT_DIR / "phq9.toml").read_text(encoding="utf-8")
    start = text.index("[licence]")
    end = text.index("[translation.en]")
    bad = tmp_path / "phq9.toml"
    bad.write_text(text[:start] + text[end:], encoding="utf-8")
    with pytest.raises(InstrumentError, match="licence"):
        load_file(bad)


def test_which_instruments_can_be_shown_in_chinese_is_what_the_licences_allow():
    """Chinese item wording ships only where its licence allows (instruments.md); the campaign page
    warns about the others (services.campaigns.without_text)."""
    from mh_platform.core.instruments import load_all
    from mh_platform.services.campaigns import without_text

    insts = load_all()
    assert {i for i, inst in insts.items() if inst.has_item_text("zh")} == {"phq9", "gad7", "asq", "who5"}
    assert {i for i, inst in insts.items() if not inst.has_item_text("en")} == {"phq_a", "sdq"}  # no text shipped
    assert {i for i, inst in insts.items() if not inst.licence.ship_text} >= {"phq_a", "sdq"}
    assert without_text(("phq9", "gad7", "asq", "k10", "who5")) == ("k10",)
