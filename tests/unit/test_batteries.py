"""Battery rules (core/batteries.py, batteries.toml): which instruments a student answers, by grade and age."""

from __future__ import annotations

import pytest

from mh_platform.core import batteries
from mh_platform.core.errors import ValidationFailed
from mh_platform.core.instruments import load_all

RULES = batteries.load_rules()


@pytest.mark.parametrize(("grade", "age", "expected"), [
    (3, 8, ("scared", "cesdc")),                    # K10 from 9, ASQ from 10 (instruments.md §1)
    (3, 9, ("scared", "cesdc", "k10")),
    (5, 10, ("scared", "cesdc", "k10", "asq")),
    (6, None, ("scared", "cesdc")),                 # age unknown: no age-gated instrument
    (7, 12, ("phq9", "gad7", "asq", "k10", "who5")),
    (12, 17, ("phq9", "gad7", "asq", "k10", "who5")),
    (1, 6, ()),                                     # grades 1-2 are not screened
])
def test_battery_by_grade_and_age(grade, age, expected):
    assert batteries.battery_for(RULES, grade, age) == expected


def test_every_shipped_rule_respects_each_instruments_minimum_age():
    """An instrument is given no younger than its file's [ages] min: through the rule's min_age, or
    because the rule's lowest grade is old enough (grade g: at least g + 5 years old)."""
    insts = load_all()
    for rule in RULES:
        for iid in rule.instruments:
            lowest = insts[iid].ages_min
            if lowest is not None:
                assert rule.min_age.get(iid, rule.grade_min + 5) >= lowest, (rule.stage, iid)


def test_age_is_the_lower_bound_from_the_birth_year():
    assert batteries.age_on(2016, 2026) == 9  # born in 2016: 9 or 10 during 2026; the lower bound
    assert batteries.age_on(None, 2026) is None


def test_min_age_for_an_instrument_not_in_the_rule_is_refused():
    with pytest.raises(ValidationFailed):
        batteries.parse_rules({"rule": [{"stage": "primary", "grades": [3, 6], "instruments": ["cesdc"],
                                         "min_age": {"asq": 10}}]})
