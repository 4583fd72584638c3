"""Battery rules: which instruments a student answers in a campaign, by grade and age. Pure.

The rules live in ``batteries.toml`` (data the city can change); a campaign stores its own copy
(``rules_to_json``) so a running campaign never changes under the students.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mh_platform.core.errors import ValidationFailed

DEFAULT_FILE = Path(__file__).with_name("batteries.toml")


@dataclass(frozen=True)
class BatteryRule:
    stage: str
    grade_min: int
    grade_max: int
    instruments: tuple[str, ...]
    min_age: Mapping[str, int] = field(default_factory=dict)

    def applies(self, grade: int) -> bool:
        return self.grade_min <= grade <= self.grade_max


def parse_rules(data: Mapping[str, Any]) -> tuple[BatteryRule, ...]:
    """Rules from the TOML/JSON shape ``{"rule": [{stage, grades: [lo, hi], instruments, min_age}]}``."""
    raw = data.get("rule")
    if not isinstance(raw, list) or not raw:
        raise ValidationFailed("battery rules: at least one [[rule]] is needed")
    out: list[BatteryRule] = []
    for i, r in enumerate(raw, 1):
        try:
            lo, hi = (int(x) for x in r["grades"])
            insts = tuple(str(x) for x in r["instruments"])
            min_age = {str(k): int(v) for k, v in (r.get("min_age") or {}).items()}
            stage = str(r["stage"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationFailed(f"battery rule {i}: needs stage, grades [lo, hi] and instruments") from exc
        if not (1 <= lo <= hi <= 12):
            raise ValidationFailed(f"battery rule {i}: grades must be within 1..12, low first")
        if not insts or len(set(insts)) != len(insts):
            raise ValidationFailed(f"battery rule {i}: instruments must be a non-empty list without repeats")
        unknown = set(min_age) - set(insts)
        if unknown:
            raise ValidationFailed(f"battery rule {i}: min_age names instruments not in the rule: {sorted(unknown)}")
        out.append(BatteryRule(stage, lo, hi, insts, min_age))
    return tuple(out)


def load_rules(path: str | Path | None = None) -> tuple[BatteryRule, ...]:
    p = Path(path) if path else DEFAULT_FILE
    with p.open("rb") as fh:
        return parse_rules(tomllib.load(fh))


def rules_to_json(rules: Iterable[BatteryRule]) -> dict[str, Any]:
    return {"rule": [{"stage": r.stage, "grades": [r.grade_min, r.grade_max], "instruments": list(r.instruments),
                      "min_age": dict(r.min_age)} for r in rules]}


def restrict_to_grades(rules: Iterable[BatteryRule], grades: Iterable[int]) -> tuple[BatteryRule, ...]:
    """The rules that apply to at least one of ``grades``."""
    gs = set(grades)
    return tuple(r for r in rules if any(r.applies(g) for g in gs))


def age_on(birth_year: int | None, year: int) -> int | None:
    """Age in whole years during ``year`` when only the birth year is known (the lower bound)."""
    if birth_year is None:
        return None
    return year - birth_year - 1 if year > birth_year else 0


def battery_for(rules: Iterable[BatteryRule], grade: int, age: int | None) -> tuple[str, ...]:
    """The instruments for a student in ``grade`` of ``age`` (None: unknown age → age-gated ones left out)."""
    for r in rules:
        if r.applies(grade):
            return tuple(i for i in r.instruments
                         if i not in r.min_age or (age is not None and age >= r.min_age[i]))
    return ()


def all_instruments(rules: Iterable[BatteryRule]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for r in rules:
        for i in r.instruments:
            seen.setdefault(i, None)
    return tuple(seen)
