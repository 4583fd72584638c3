"""Pure rules for reaching someone: the acting tier when a tier has nobody (``reachable_tier``), handing a
flag up (``reroute``) and moving it with the student (``relocate``)."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from mh_platform.core.errors import InvalidTransition
from mh_platform.core.escalation import due_escalation, reachable_tier
from mh_platform.core.flag_lifecycle import (
    FlagEventKind,
    FlagStatus,
    apply,
    apply_escalation,
    raise_flag,
    relocate,
    reroute,
)
from mh_platform.core.types import Level, Role, Tier

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)
ALL = {Tier.CLASS, Tier.SCHOOL, Tier.COUNTY, Tier.CITY}


@pytest.mark.parametrize(("tier", "staffed", "want"), [
    (Tier.SCHOOL, ALL, Tier.SCHOOL),
    (Tier.SCHOOL, {Tier.COUNTY, Tier.CITY}, Tier.COUNTY),
    (Tier.SCHOOL, {Tier.CITY}, Tier.CITY),
    (Tier.CLASS, {Tier.SCHOOL, Tier.COUNTY}, Tier.SCHOOL),
    (Tier.CLASS, {Tier.CLASS}, Tier.CLASS),
    (Tier.COUNTY, {Tier.CLASS, Tier.SCHOOL}, None),  # nobody at or above: stays, the gap is recorded
    (Tier.SCHOOL, set(), None),
])
def test_reachable_tier_is_the_lowest_staffed_tier_at_or_above(tier, staffed, want):
    assert reachable_tier(tier, staffed) == want


def test_watch_only_flags_are_not_handed_above_the_school():
    assert reachable_tier(Tier.SCHOOL, {Tier.COUNTY}, is_watch=True) is None
    assert reachable_tier(Tier.SCHOOL, {Tier.SCHOOL, Tier.COUNTY}, is_watch=True) == Tier.SCHOOL


def test_reroute_hands_a_yellow_flag_above_its_ceiling_and_the_sweep_then_reminds_there():
    f, _ = raise_flag(Level.YELLOW, "screening", T0)
    at = T0 + H
    g, ev = reroute(f, Tier.COUNTY, at)
    assert (g.tier, g.status, g.tier_entered_at, g.ack_due_at, g.handle_due_at, g.escalations) == (
        Tier.COUNTY, FlagStatus.RAISED, at, at + 72 * H, at + 7 * 24 * H, 1)
    assert (ev.kind, ev.reason_code, ev.from_tier, ev.to_tier) == (FlagEventKind.ESCALATED, "no_recipient",
                                                                   Tier.SCHOOL, Tier.COUNTY)
    step = due_escalation(g, at + 73 * H)
    assert step is not None and step.is_reminder and step.to_tier == Tier.COUNTY
    assert apply_escalation(g, step)[0].tier == Tier.COUNTY
    # a county officer may acknowledge it there
    assert apply(g, "acknowledge", Role.COUNTY_OFFICER, None, at)[0].status == FlagStatus.ACKNOWLEDGED


def test_reroute_refuses_down_sideways_closed_and_watch_above_school():
    f, _ = raise_flag(Level.ORANGE, "screening", T0)
    for to in (Tier.SCHOOL, Tier.CLASS):
        with pytest.raises(InvalidTransition):
            reroute(f, to, T0)
    with pytest.raises(InvalidTransition):
        reroute(replace(f, status=FlagStatus.CLOSED), Tier.COUNTY, T0)
    w, _ = raise_flag(Level.YELLOW, "model", T0, is_watch=True)
    with pytest.raises(InvalidTransition):
        reroute(w, Tier.COUNTY, T0)


def test_relocate_to_another_school_restarts_raised_at_the_school_tier_with_fresh_clocks():
    f, _ = raise_flag(Level.RED, "screening", T0)
    f = replace(f, tier=Tier.CITY, status=FlagStatus.INTERVENTION, ack_due_at=None, handle_due_at=None,
                escalations=2)
    at = T0 + 30 * H
    g, ev = relocate(f, at, new_school=True, start=Tier.SCHOOL)
    assert (g.tier, g.status, g.level, g.tier_entered_at, g.ack_due_at, g.handle_due_at, g.escalations) == (
        Tier.SCHOOL, FlagStatus.RAISED, Level.RED, at, at + H, at + 24 * H, 2)
    assert (ev.kind, ev.reason_code, ev.from_tier, ev.to_tier, ev.from_status) == (
        FlagEventKind.TRANSFERRED, "student_transferred", Tier.CITY, Tier.SCHOOL, FlagStatus.INTERVENTION)
    # a monitor's concern starts at the class tier; at a new school it starts at least at the school
    c, _ = raise_flag(Level.YELLOW, "concern", T0, reporter_role=Role.CLASS_MONITOR)
    assert relocate(c, at, new_school=True, start=Tier.CLASS)[0].tier == Tier.SCHOOL


def test_relocate_within_the_school_keeps_tier_status_and_clocks():
    f, _ = raise_flag(Level.ORANGE, "concern", T0, reporter_role=Role.CLASS_MONITOR)
    g, ev = relocate(f, T0 + H, new_school=False, start=Tier.CLASS)
    assert g == f
    assert (ev.kind, ev.reason_code) == (FlagEventKind.TRANSFERRED, "student_moved_class")
    with pytest.raises(InvalidTransition):
        relocate(replace(f, status=FlagStatus.CLOSED), T0, new_school=True, start=Tier.SCHOOL)
