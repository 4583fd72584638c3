"""Shared vocabulary of the domain: roles, tiers, risk levels, org-unit kinds."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    CLASS_MONITOR = "class_monitor"
    HEAD_TEACHER = "head_teacher"
    COUNSELLOR = "counsellor"
    SCHOOL_LEADER = "school_leader"
    COUNTY_OFFICER = "county_officer"
    CITY_OFFICER = "city_officer"
    CLINICIAN = "clinician"
    SYSADMIN = "sysadmin"


class UnitKind(StrEnum):
    """Kinds of org unit, top to bottom. A unit's parent is always of the kind just above."""

    CITY = "city"
    COUNTY = "county"
    SCHOOL = "school"
    GRADE = "grade"
    CLASS = "class"


UNIT_DEPTH: dict[UnitKind, int] = {k: i for i, k in enumerate(UnitKind)}


class Tier(StrEnum):
    """The four tiers of the early-warning network (班级—学校—县区—市), bottom to top."""

    CLASS = "class"
    SCHOOL = "school"
    COUNTY = "county"
    CITY = "city"


TIER_ORDER: tuple[Tier, ...] = (Tier.CLASS, Tier.SCHOOL, Tier.COUNTY, Tier.CITY)


def next_tier(tier: Tier) -> Tier | None:
    """The tier above ``tier``, or None at the city."""
    i = TIER_ORDER.index(tier)
    return TIER_ORDER[i + 1] if i + 1 < len(TIER_ORDER) else None


class Level(StrEnum):
    """Risk levels: red 红 (I), orange 橙 (II), yellow 黄 (III)."""

    RED = "red"
    ORANGE = "orange"
    YELLOW = "yellow"


LEVEL_RANK: dict[Level, int] = {Level.YELLOW: 1, Level.ORANGE: 2, Level.RED: 3}


def max_level(a: Level | None, b: Level | None) -> Level | None:
    """The more severe of two levels (None means no level)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if LEVEL_RANK[a] >= LEVEL_RANK[b] else b
