"""Green-channel referral: transition table, consent, decline/re-route, deadlines, escalation, state machine."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mh_platform.core.errors import Forbidden, InvalidTransition, ValidationFailed
from mh_platform.core.referrals import (
    TRANSITIONS,
    Referral,
    ReferralAction,
    ReferralState,
    allowed_actions,
    apply,
    apply_referral_escalation,
    default_referral_policy,
    due_referral_escalation,
    new_referral,
    parse_referral_policy,
)
from mh_platform.core.types import TIER_ORDER, Level, Role, Tier

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)
C, CL = Role.COUNSELLOR, Role.CLINICIAN
S = ReferralState


def submitted(level=Level.RED, at=T0):
    r, _ = new_referral(level, "inst-a", C, at)
    r, _ = apply(r, "submit", C, at, consent="guardian")
    return r


def test_end_to_end_with_decline_reroute_and_no_show():
    r, ev = new_referral(Level.RED, "inst-a", C, T0)
    assert r.state == S.DRAFT and r.due_at is None and ev.kind == "referral:drafted"
    r, ev = apply(r, "submit", C, T0, consent="guardian")
    assert r.state == S.REQUESTED and r.requested_at == T0 and r.due_at == T0 + 24 * H
    r, ev = apply(r, "decline", CL, T0 + H, decline_code="no_capacity")
    assert r.state == S.DECLINED and ev.detail == {"decline_code": "no_capacity"} and r.due_at == T0 + 25 * H
    r, ev = apply(r, "reroute", C, T0 + 2 * H, institution_id="inst-b")
    assert (r.state, r.institution_id, r.decline_code) == (S.REQUESTED, "inst-b", None)
    assert r.requested_at == T0 and r.due_at == T0 + 26 * H  # new institution's window; first request kept
    r, _ = apply(r, "accept", CL, T0 + 3 * H)
    r, _ = apply(r, "schedule", CL, T0 + 4 * H, appointment_at=T0 + 30 * H)
    assert r.due_at == T0 + 54 * H  # attendance recorded within 24 h of the appointment
    r, _ = apply(r, "record_no_show", CL, T0 + 31 * H)
    assert r.due_at == T0 + 55 * H
    r, _ = apply(r, "reschedule", CL, T0 + 32 * H, appointment_at=T0 + 60 * H)
    assert r.due_at == T0 + 72 * H  # the first-appointment target (72 h after the first request) is earlier
    r, _ = apply(r, "record_attended", CL, T0 + 61 * H)
    assert r.attended_once and r.due_at == T0 + 61 * H + 7 * 24 * H
    with pytest.raises(ValidationFailed):
        apply(r, "record_feedback", CL, T0 + 70 * H)
    r, ev = apply(r, "record_feedback", CL, T0 + 70 * H, diagnosis_category="depressive_episode")
    assert ev.detail == {"diagnosis_category": "depressive_episode"}
    r, _ = apply(r, "start_follow_up", C, T0 + 80 * H)
    with pytest.raises(ValidationFailed):
        apply(r, "close", C, T0 + 90 * H)
    r, ev = apply(r, "close", C, T0 + 90 * H, reason="back at school, plan reviewed")
    assert r.state == S.CLOSED and r.due_at is None and ev.reason == "back at school, plan reviewed"
    for a in ReferralAction:
        with pytest.raises(InvalidTransition):
            apply(r, a, C, T0 + 91 * H)


def test_consent_required_override_only_for_red_with_reason():
    d, _ = new_referral(Level.RED, "inst-a", C, T0)
    with pytest.raises(ValidationFailed):
        apply(d, "submit", C, T0)
    with pytest.raises(ValidationFailed):
        apply(d, "submit", C, T0, consent="maybe")
    with pytest.raises(ValidationFailed):
        apply(d, "submit", C, T0, consent="override")
    r, ev = apply(d, "submit", C, T0, consent="override", reason="active plan; guardian unreachable")
    assert r.consent_basis == "override" and ev.kind == "referral:consent_overridden"
    o, _ = new_referral(Level.ORANGE, "inst-a", C, T0)
    with pytest.raises(ValidationFailed):
        apply(o, "submit", C, T0, consent="override", reason="x")


def test_roles_institution_side_and_school_side():
    r = submitted()
    with pytest.raises(Forbidden):
        apply(r, "accept", C, T0)
    with pytest.raises(Forbidden):
        apply(r, "reroute", CL, T0, institution_id="x", reason="y")
    with pytest.raises(Forbidden):
        new_referral(Level.RED, "inst-a", Role.HEAD_TEACHER, T0)
    assert set(allowed_actions(r, CL)) == {ReferralAction.ACCEPT, ReferralAction.DECLINE}
    assert set(allowed_actions(r, C)) == {ReferralAction.REROUTE, ReferralAction.CANCEL}
    assert allowed_actions(r, Role.SYSADMIN) == []


def test_decline_needs_structured_code_and_other_needs_reason():
    r = submitted()
    with pytest.raises(ValidationFailed):
        apply(r, "decline", CL, T0)
    with pytest.raises(ValidationFailed):
        apply(r, "decline", CL, T0, decline_code="busy")
    with pytest.raises(ValidationFailed):
        apply(r, "decline", CL, T0, decline_code="other")
    apply(r, "decline", CL, T0, decline_code="other", reason="closed for renovation")


def test_reroute_rules_and_unexpected_arguments():
    r = submitted()
    with pytest.raises(ValidationFailed):
        apply(r, "reroute", C, T0, institution_id="inst-b")  # withdrawing from a silent institution needs a reason
    with pytest.raises(ValidationFailed):
        apply(r, "reroute", C, T0, institution_id="inst-a", reason="same")
    with pytest.raises(ValidationFailed):
        apply(r, "accept", CL, T0, appointment_at=T0 + H)
    r2, _ = apply(r, "accept", CL, T0)
    with pytest.raises(ValidationFailed):
        apply(r2, "schedule", CL, T0)
    with pytest.raises(ValidationFailed):
        apply(r2, "schedule", CL, T0, appointment_at=T0 - H)


def test_missed_acceptance_escalates_to_county_then_city_then_reminds():
    r = submitted()
    assert due_referral_escalation(r, T0 + 24 * H - timedelta(seconds=1)) is None
    step = due_referral_escalation(r, T0 + 24 * H)
    assert (step.missed, step.from_tier, step.to_tier) == ("requested", Tier.SCHOOL, Tier.COUNTY)
    assert step.inform == (Role.COUNTY_OFFICER, C)
    r, ev = apply_referral_escalation(r, step)
    assert r.tier == Tier.COUNTY and r.due_at == T0 + 48 * H and ev.kind == "referral:escalated"
    assert due_referral_escalation(r, T0 + 24 * H) is None
    with pytest.raises(InvalidTransition):
        apply_referral_escalation(r, step)  # a stale step cannot escalate twice
    r, _ = apply_referral_escalation(r, due_referral_escalation(r, T0 + 48 * H))
    assert r.tier == Tier.CITY
    step = due_referral_escalation(r, T0 + 72 * H)
    assert step.is_reminder
    r, ev = apply_referral_escalation(r, step)
    assert r.tier == Tier.CITY and ev.kind == "referral:reminded"
    # the tier never goes back down when the institution finally answers
    r, _ = apply(r, "accept", CL, T0 + 73 * H)
    assert r.tier == Tier.CITY


def test_first_appointment_target_escalates_once():
    r = submitted()
    r, _ = apply(r, "accept", CL, T0 + H)
    r, _ = apply(r, "schedule", CL, T0 + 2 * H, appointment_at=T0 + 100 * H)
    assert r.due_at == T0 + 72 * H
    step = due_referral_escalation(r, T0 + 72 * H)
    assert step.missed == "first_appointment"
    r, _ = apply_referral_escalation(r, step)
    assert r.first_appointment_escalated and r.due_at == T0 + 96 * H
    r, _ = apply(r, "reschedule", CL, T0 + 80 * H, appointment_at=T0 + 90 * H, reason="earlier slot")
    assert r.due_at == T0 + 114 * H  # the first-appointment target already escalated: not again


def test_drafts_and_closed_never_escalate():
    d, _ = new_referral(Level.RED, "inst-a", C, T0)
    assert due_referral_escalation(d, T0 + 1000 * H) is None
    c, _ = apply(submitted(), "cancel", C, T0, reason="family moved away")
    assert due_referral_escalation(c, T0 + 1000 * H) is None


def test_default_policy_values():
    p = default_referral_policy()
    assert p.levels[Level.RED].windows[S.REQUESTED] == 24 * H
    assert p.levels[Level.RED].first_appointment == 72 * H
    assert p.override_levels == {Level.RED} and "no_capacity" in p.decline_codes


def test_invalid_policy():
    with pytest.raises(ValidationFailed) as exc:
        parse_referral_policy({"format": 1, "levels": {"red": {"requested": "soon"}},
                               "consent": {"override_levels": ["purple"]}, "decline_reasons": {"codes": []}})
    fields = {e["field"] for e in exc.value.errors}
    assert {"levels.red.requested", "levels.orange", "consent.override_levels", "decline_reasons.codes"} <= fields
    with pytest.raises(ValidationFailed):
        parse_referral_policy("= nope")


# ----------------------------------------------------------------------------- the state machine

REACHED: set[ReferralState] = set()
REASONS = st.one_of(st.none(), st.just(""), st.text(min_size=1, max_size=6))
NEEDS_REASON = {(t.action, t.source) for t in TRANSITIONS if t.needs_reason}


class ReferralMachine(RuleBasedStateMachine):
    """Random actors and orders: only table transitions happen, reasons are never skipped, closed is terminal."""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.r, _ = new_referral(Level.RED, "inst-0", C, T0)
        self.history: list[ReferralState] = [self.r.state]
        self.institutions = 0

    @rule(action=st.sampled_from(list(ReferralAction)), role=st.sampled_from(list(Role)), reason=REASONS,
          consent=st.sampled_from([None, "guardian", "override"]),
          code=st.sampled_from([None, "no_capacity", "other", "bogus"]),
          appt=st.one_of(st.none(), st.integers(min_value=-10, max_value=200)),
          new_inst=st.booleans(), category=st.sampled_from([None, "", "anxiety"]))
    def act(self, action, role, reason, consent, code, appt, new_inst, category):
        before = self.r
        inst = f"inst-{self.institutions + 1}" if new_inst else None
        appointment = None if appt is None else self.now + timedelta(hours=appt)
        try:
            after, ev = apply(before, action, role, self.now, reason=reason, consent=consent, decline_code=code,
                              appointment_at=appointment, institution_id=inst, diagnosis_category=category)
        except (InvalidTransition, Forbidden, ValidationFailed):
            assert self.r == before
            return
        assert (action, before.state) in {(t.action, t.source) for t in TRANSITIONS}
        if (action, before.state) in NEEDS_REASON or consent == "override" and action == ReferralAction.SUBMIT:
            assert ev.reason, "a required reason was skipped"
        if role == Role.CLINICIAN:
            assert action not in (ReferralAction.SUBMIT, ReferralAction.REROUTE, ReferralAction.CLOSE,
                                  ReferralAction.CANCEL)
        assert role in (C, Role.CLINICIAN)
        if action == ReferralAction.REROUTE:
            self.institutions += 1
            assert after.institution_id != before.institution_id
        self.r = after
        self.history.append(after.state)

    @precondition(lambda self: self.r.state != S.CLOSED)
    @rule(data=st.data())
    def act_legally(self, data):
        """Mostly-valid steps, so that runs reach the late states (feedback, follow-up, closed)."""
        moves = [(a, role) for role in (C, CL) for a in allowed_actions(self.r, role)
                 if a != ReferralAction.CANCEL]  # `act` covers cancel
        if not moves:
            return
        action, role = data.draw(st.sampled_from(moves))
        a = ReferralAction
        self.act(action, role, data.draw(st.sampled_from([None, "because"])),
                 "guardian" if action == a.SUBMIT else None,
                 data.draw(st.sampled_from(["no_capacity", "other"])) if action == a.DECLINE else None,
                 data.draw(st.integers(0, 100)) if action in (a.SCHEDULE, a.RESCHEDULE) else None,
                 action == a.REROUTE, "anxiety" if action == a.RECORD_FEEDBACK else None)

    @rule(hours=st.integers(min_value=0, max_value=100))
    def time_passes(self, hours):
        self.now += timedelta(hours=hours)

    @rule()
    def sweep(self):
        step = due_referral_escalation(self.r, self.now)
        if step is None:
            return
        before = self.r
        self.r, _ = apply_referral_escalation(before, step)
        assert TIER_ORDER.index(self.r.tier) >= TIER_ORDER.index(before.tier)
        assert due_referral_escalation(self.r, self.now) is None

    @invariant()
    def consistent(self):
        r = self.r
        REACHED.add(r.state)
        if S.CLOSED in self.history:
            assert self.history.index(S.CLOSED) == len(self.history) - 1, "closed is terminal"
        if r.state not in (S.DRAFT, S.CLOSED):
            assert r.consent_basis is not None and r.requested_at is not None and r.due_at is not None
        if r.state in (S.ATTENDED, S.FEEDBACK, S.SCHOOL_FOLLOW_UP):
            assert r.attended_once
        if r.state in (S.FEEDBACK, S.SCHOOL_FOLLOW_UP):
            assert r.diagnosis_category
        if r.state == S.SCHEDULED:
            assert r.appointment_at is not None


ReferralMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=50, deadline=None, derandomize=True,
                                             suppress_health_check=[HealthCheck.too_slow])
TestReferralMachine = ReferralMachine.TestCase


def test_state_machine_reached_every_state():
    """Runs after the machine (file order): its random walks got past the easy states."""
    if not REACHED:  # run alone (e.g. -k): walk the machine here first
        TestReferralMachine("runTest").runTest()
    assert set(S) == REACHED


def test_table_has_only_known_states():
    assert all(t.source != S.CLOSED for t in TRANSITIONS)
    assert {t.target for t in TRANSITIONS} | {S.DRAFT} == set(S)
    assert isinstance(submitted(), Referral)
