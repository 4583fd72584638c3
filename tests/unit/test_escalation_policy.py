"""Escalation policy: defaults match DESIGN.md, deadlines, due steps, ceilings, observers, validation."""

from datetime import UTC, datetime, timedelta

import pytest

from mh_platform.core.errors import ValidationFailed
from mh_platform.core.escalation import (
    deadlines_for,
    default_escalation_policy,
    due_escalation,
    due_oversight_notices,
    observers,
    parse_duration,
    parse_escalation_policy,
    start_tier,
)
from mh_platform.core.flag_lifecycle import FlagState, FlagStatus, apply_escalation, raise_flag
from mh_platform.core.types import Level, Role, Tier

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)
R, OR, Y = Level.RED, Level.ORANGE, Level.YELLOW


def test_defaults_match_design_table():
    p = default_escalation_policy()
    assert deadlines_for(R, Tier.SCHOOL, T0) == (T0 + H, T0 + 24 * H)
    assert deadlines_for(OR, Tier.SCHOOL, T0) == (T0 + 24 * H, T0 + 72 * H)
    assert deadlines_for(Y, Tier.CLASS, T0) == (T0 + 72 * H, T0 + 7 * 24 * H)
    assert p.levels[R].ceiling == Tier.CITY and p.levels[OR].ceiling == Tier.COUNTY
    assert p.levels[Y].ceiling == Tier.SCHOOL and p.levels[Y].inform_on_miss == (Role.SCHOOL_LEADER,)
    assert p.levels[R].inform_county_at_once and p.levels[R].inform_city_after == 48 * H
    assert not p.levels[OR].inform_county_at_once and p.levels[OR].inform_city_after is None


@pytest.mark.parametrize(("source", "role", "tier"), [
    ("concern", Role.CLASS_MONITOR, Tier.CLASS), ("concern", Role.HEAD_TEACHER, Tier.SCHOOL),
    ("concern", Role.COUNSELLOR, Tier.SCHOOL), ("concern", None, Tier.SCHOOL), ("screening", None, Tier.SCHOOL),
    ("critical", None, Tier.SCHOOL), ("deterioration", None, Tier.SCHOOL), ("model", None, Tier.SCHOOL),
])
def test_start_tier(source, role, tier):
    assert start_tier(source, role) == tier


def test_start_tier_unknown_source():
    with pytest.raises(ValidationFailed):
        start_tier("gossip")


def test_red_unacknowledged_for_an_hour_goes_to_county_then_city_then_reminders():
    f, _ = raise_flag(R, "screening", T0)
    assert due_escalation(f, T0 + H - timedelta(seconds=1)) is None
    step = due_escalation(f, T0 + H)
    assert step is not None
    assert (step.missed, step.due_at, step.from_tier, step.to_tier) == ("ack", T0 + H, Tier.SCHOOL, Tier.COUNTY)
    assert step.inform == (Role.COUNTY_OFFICER, Role.SCHOOL_LEADER)
    f, ev = apply_escalation(f, step)
    assert f.tier == Tier.COUNTY and f.ack_due_at == T0 + 2 * H and f.escalations == 1
    assert ev.kind == "flag:escalated" and ev.reason_code == "missed_ack"
    # the same sweep instant again: nothing more is due (exactly once per missed deadline)
    assert due_escalation(f, T0 + H) is None
    f, _ = apply_escalation(f, due_escalation(f, T0 + 2 * H))
    assert f.tier == Tier.CITY
    step = due_escalation(f, T0 + 3 * H)
    assert step is not None and step.is_reminder and step.to_tier == Tier.CITY
    f, ev = apply_escalation(f, step)
    assert ev.kind == "flag:reminded" and f.ack_due_at == T0 + 4 * H


def test_acknowledged_red_escalates_on_missed_handle_deadline():
    f = FlagState(R, Tier.SCHOOL, FlagStatus.ACKNOWLEDGED, T0, T0, None, T0 + 24 * H)
    assert due_escalation(f, T0 + 23 * H) is None
    step = due_escalation(f, T0 + 24 * H)
    assert step.missed == "handle" and step.to_tier == Tier.COUNTY
    f2, _ = apply_escalation(f, step)
    assert f2.ack_due_at is None and f2.handle_due_at == T0 + 48 * H


def test_orange_stops_at_county_yellow_at_school():
    f, _ = raise_flag(OR, "screening", T0)
    step = due_escalation(f, T0 + 24 * H)
    assert step.to_tier == Tier.COUNTY and step.inform == (Role.COUNTY_OFFICER,)
    f, _ = apply_escalation(f, step)
    step = due_escalation(f, T0 + 48 * H)
    assert step.is_reminder and step.to_tier == Tier.COUNTY
    y, _ = raise_flag(Y, "concern", T0, reporter_role=Role.CLASS_MONITOR)
    assert y.tier == Tier.CLASS
    step = due_escalation(y, T0 + 72 * H)
    assert step.to_tier == Tier.SCHOOL and step.inform == (Role.COUNSELLOR, Role.SCHOOL_LEADER)
    y, _ = apply_escalation(y, step)
    step = due_escalation(y, T0 + 144 * H)
    assert step.is_reminder and step.to_tier == Tier.SCHOOL and Role.SCHOOL_LEADER in step.inform


def test_watch_only_flag_never_leaves_school_even_if_policy_ceiling_is_higher():
    f = FlagState(Y, Tier.SCHOOL, FlagStatus.RAISED, T0, T0, T0 + H, T0 + 2 * H, is_watch=True)
    text = default_policy_text().replace('ceiling = "school"           # the school leader', 'ceiling = "city" #')
    p = parse_escalation_policy(text)
    assert p.levels[Y].ceiling == Tier.CITY
    step = due_escalation(f, T0 + H, p)
    assert step.to_tier == Tier.SCHOOL
    assert due_escalation(FlagState(Y, Tier.SCHOOL, FlagStatus.RAISED, T0, T0, T0 + H, None), T0 + H,
                          p).to_tier == Tier.COUNTY


def test_a_watch_only_flags_missed_deadline_tells_the_acting_role_only():
    """The model's signal is the counsellor's alone (model:read_watch): not the level's inform_on_miss."""
    watch = FlagState(Y, Tier.SCHOOL, FlagStatus.RAISED, T0, T0, T0 + H, T0 + 2 * H, is_watch=True)
    assert due_escalation(watch, T0 + H).inform == (Role.COUNSELLOR,)
    rule = FlagState(Y, Tier.SCHOOL, FlagStatus.RAISED, T0, T0, T0 + H, T0 + 2 * H)
    assert due_escalation(rule, T0 + H).inform == (Role.COUNSELLOR, Role.SCHOOL_LEADER)


def test_closed_and_assessed_flags_never_escalate():
    closed = FlagState(R, Tier.SCHOOL, FlagStatus.CLOSED, T0, T0, T0 + H, T0 + 24 * H)
    assert due_escalation(closed, T0 + 100 * H) is None
    assessed = FlagState(R, Tier.SCHOOL, FlagStatus.ASSESSED, T0, T0, None, None)
    assert due_escalation(assessed, T0 + 100 * H) is None


def test_observers():
    assert observers(Y, Tier.CLASS, T0, T0) == {Tier.CLASS}
    assert observers(OR, Tier.SCHOOL, T0, T0 + 100 * H) == {Tier.CLASS, Tier.SCHOOL}
    assert observers(R, Tier.SCHOOL, T0, T0) == {Tier.CLASS, Tier.SCHOOL, Tier.COUNTY}
    assert observers(R, Tier.SCHOOL, T0, T0 + 48 * H) == {Tier.CLASS, Tier.SCHOOL, Tier.COUNTY}
    assert observers(R, Tier.SCHOOL, T0, T0 + 49 * H) == set(Tier)
    assert observers(OR, Tier.CITY, T0, T0) == set(Tier)


def test_oversight_notices_once_each():
    f, _ = raise_flag(R, "screening", T0)
    assert [(n.tier, n.role) for n in due_oversight_notices(f, T0)] == [(Tier.COUNTY, Role.COUNTY_OFFICER)]
    informed = FlagState(**{**f.__dict__, "county_informed_at": T0})
    assert due_oversight_notices(informed, T0 + 48 * H) == []
    assert [n.tier for n in due_oversight_notices(informed, T0 + 49 * H)] == [Tier.CITY]
    done = FlagState(**{**informed.__dict__, "city_informed_at": T0 + 49 * H})
    assert due_oversight_notices(done, T0 + 100 * H) == []
    o, _ = raise_flag(OR, "screening", T0)
    assert due_oversight_notices(o, T0 + 100 * H) == []


def default_policy_text() -> str:
    from importlib import resources
    return resources.files("mh_platform.core").joinpath("escalation_policy.toml").read_text(encoding="utf-8")


def test_city_policy_with_tier_override():
    text = default_policy_text().replace("# [levels.red.tiers.county]\n# ack_within = \"2h\"\n# handle_within = \"24h\"",
                                         "[levels.red.tiers.county]\nack_within = \"2h\"\nhandle_within = \"24h\"")
    p = parse_escalation_policy(text)
    assert deadlines_for(R, Tier.COUNTY, T0, p) == (T0 + 2 * H, T0 + 24 * H)
    assert deadlines_for(R, Tier.SCHOOL, T0, p) == (T0 + H, T0 + 24 * H)


@pytest.mark.parametrize(("old", "new", "field"), [
    ('ack_within = "1h"', 'ack_within = "48h"', "levels.red"),          # ack after handle
    ('ack_within = "1h"', 'ack_within = "soon"', "levels.red.ack_within"),
    ('ceiling = "county"', 'ceiling = "province"', "levels.orange.ceiling"),
    ('inform_on_miss = []', 'inform_on_miss = ["janitor"]', "levels.orange.inform_on_miss"),
    ('class = "head_teacher"', 'class = "nobody"', "tier_roles.class"),
    ('format = 1', 'format = 7', "format"),
    ('handle_within = "24h"        # interview', 'handle_within = "96h" #', "levels.red"),  # red slower than orange
])
def test_invalid_policies_are_refused(old, new, field):
    text = default_policy_text()
    assert old in text
    with pytest.raises(ValidationFailed) as exc:
        parse_escalation_policy(text.replace(old, new, 1))
    assert field in {e["field"] for e in exc.value.errors}


def test_missing_level_and_not_toml():
    with pytest.raises(ValidationFailed) as exc:
        parse_escalation_policy({"format": 1, "levels": {"red": {}}})
    assert {"levels.orange", "levels.yellow"} <= {e["field"] for e in exc.value.errors}
    with pytest.raises(ValidationFailed):
        parse_escalation_policy("[[")


@pytest.mark.parametrize(("text", "delta"), [("90m", timedelta(minutes=90)), ("24h", 24 * H), (" 7d ", 7 * 24 * H)])
def test_parse_duration(text, delta):
    assert parse_duration(text) == delta


@pytest.mark.parametrize("text", ["0h", "1w", "h", "", "-1h", "1.5h"])
def test_parse_duration_refuses(text):
    with pytest.raises(ValidationFailed):
        parse_duration(text)


def test_flag_escalated_by_hand_above_its_ceiling_gets_reminders_there():
    """Found by the state machine: a yellow flag pushed to the county by hand is reminded at the county."""
    f = FlagState(Y, Tier.COUNTY, FlagStatus.RAISED, T0, T0, T0 + 72 * H, T0 + 168 * H)
    step = due_escalation(f, T0 + 72 * H)
    assert step.is_reminder and step.to_tier == Tier.COUNTY
    f2, ev = apply_escalation(f, step)
    assert f2.tier == Tier.COUNTY and ev.kind == "flag:reminded"
