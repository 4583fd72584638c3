"""The loader rejects broken definitions with a clear list of problems, and finds the directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from mh_platform.core.errors import NotFound
from mh_platform.core.instruments import (
    DEFAULT_DIR,
    InstrumentError,
    load_all,
    load_file,
    load_instrument,
)

PHQ9 = (DEFAULT_DIR / "phq9.toml").read_text(encoding="utf-8")


def _write(tmp_path: Path, text: str, name: str = "phq9.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


@pytest.mark.parametrize(("old", "new", "message"), [
    ('{ id = "moderate", min = 10,', '{ id = "moderate", min = 11,', "gap between bands mild and moderate"),
    ('{ id = "moderate", min = 10,', '{ id = "moderate", min = 9,', "overlap"),
    ('{ id = "severe", min = 20, max = 27,', '{ id = "severe", min = 20, max = 26,', "last band ends at 26"),
    ("levels = { 1 = \"red\", 2 = \"red\", 3 = \"red\" }", "levels = { 1 = \"red\", 4 = \"red\" }",
     "critical item 9: 4 is not an option"),
    ('item_keys = ["anhedonia", "depressed_mood"]', 'item_keys = ["anhedonia", "sadness"]', "no item with key 'sadness'"),
    ("max_missing = 2\nmethod = \"prorate\"", "max_missing = 2\nmethod = \"none\"", "method 'none' needs max_missing = 0"),
    ('response_set = "difficulty"', 'response_set = "nope"', "unknown response_set"),
    ('id = "phq9"', 'id = "phq10"', "does not match file name"),
    ("number = 3\n", "number = 4\n", "numbered 1..10 in order"),
    ("{ item = 1, in = [0] }, { item = 2", "{ item = 1, in = [7] }, { item = 2", "7 is not an option of item 1"),
    ("ship_text = true", "ship_text = false", "licence.ship_text is false but the item carries text"),
    ('{ value = 3, score = 3, en = "Nearly every day"', '{ value = "3", score = 3, en = "Nearly every day"',
     "schema error"),
])
def test_broken_definitions_are_rejected(tmp_path, old, new, message):
    assert old in PHQ9, old
    with pytest.raises(InstrumentError) as exc:
        load_file(_write(tmp_path, PHQ9.replace(old, new, 1)))
    assert message in str(exc.value) or any(message in e["message"] for e in exc.value.errors), exc.value.errors


def test_not_toml(tmp_path):
    with pytest.raises(InstrumentError, match="not valid TOML"):
        load_file(_write(tmp_path, "id = \n"))


def test_unknown_instrument_and_bad_ids():
    with pytest.raises(NotFound):
        load_instrument("no_such_instrument")
    with pytest.raises(NotFound):
        load_instrument("../phq9")


def test_directory_from_argument_and_environment(tmp_path, monkeypatch):
    _write(tmp_path, PHQ9)
    assert set(load_all(tmp_path)) == {"phq9"}
    monkeypatch.setenv("MHP_INSTRUMENTS_DIR", str(tmp_path))
    assert load_instrument("phq9").path == (tmp_path / "phq9.toml").resolve()
    with pytest.raises(NotFound):
        load_instrument("gad7")


def test_loaded_objects_are_frozen():
    inst = load_instrument("phq9")
    with pytest.raises(AttributeError):
        inst.version = "2"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        inst.items[0].key = "x"  # type: ignore[misc]
    b = inst.cutoff_set().bands[0]
    assert (b.id, b.label_en, b.label_zh, b.concern) == ("minimal", "Minimal", "无/极轻微", None)


def test_phq9_definition_facts():
    inst = load_instrument("phq9")
    assert inst.loinc_panel == "44249-1" and inst.loinc_total == "44261-6"
    assert [it.loinc for it in inst.items[:9]] == ["44250-9", "44255-8", "44259-0", "44254-1", "44251-7",
                                                   "44258-2", "44252-5", "44253-3", "44260-8"]
    assert [o.loinc for o in inst.items[0].options] == ["LA6568-5", "LA6569-3", "LA6570-1", "LA6571-9"]
    assert inst.reliable_change is not None and inst.reliable_change.value == 6
    assert [c.item for c in inst.critical_items] == [9]
    assert inst.short_forms[0].items == (1, 2)
    assert load_instrument("phq_a").short_forms[0].items == (2, 1)  # same symptoms, swapped positions
    assert load_instrument("gad7").reliable_change.value == 5
