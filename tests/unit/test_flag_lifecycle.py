"""Flag lifecycle: the transition table, reasons, roles per tier, and a hypothesis state machine."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mh_platform.core.errors import Forbidden, InvalidTransition, ValidationFailed
from mh_platform.core.escalation import default_escalation_policy, due_escalation, parse_escalation_policy
from mh_platform.core.flag_lifecycle import (
    OPEN_STATUSES,
    TRANSITIONS,
    FlagAction,
    FlagState,
    FlagStatus,
    NewEvidence,
    add_evidence,
    allowed_actions,
    apply,
    apply_escalation,
    case_may_open,
    raise_flag,
)
from mh_platform.core.types import LEVEL_RANK, TIER_ORDER, Level, Role, Tier

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)
C, HT = Role.COUNSELLOR, Role.HEAD_TEACHER
R, OR, Y = Level.RED, Level.ORANGE, Level.YELLOW


def walk(level=R, source="screening", **kw):
    f, _ = raise_flag(level, source, T0, **kw)
    return f


def test_happy_path_red_with_review():
    f = walk(R)
    assert (f.status, f.tier, f.ack_due_at, f.handle_due_at) == (FlagStatus.RAISED, Tier.SCHOOL, T0 + H, T0 + 24 * H)
    f, ev = apply(f, "acknowledge", C, None, T0 + 0.5 * H)
    assert f.ack_due_at is None and f.handle_due_at == T0 + 24 * H and ev.kind == "flag:acknowledged"
    f, ev = apply(f, "confirm", C, None, T0 + 2 * H)
    assert f.status == FlagStatus.ASSESSED and f.handle_due_at is None and case_may_open(f)
    f, _ = apply(f, "refer", C, None, T0 + 3 * H)
    f, _ = apply(f, "start_monitoring", C, None, T0 + 30 * 24 * H)
    with pytest.raises(InvalidTransition):
        apply(f, "close", C, "recovered", T0 + 40 * 24 * H)  # red needs review
    f, ev = apply(f, "request_close", HT, "doing well for 4 weeks", T0 + 40 * 24 * H)
    assert f.status == FlagStatus.CLOSE_REQUESTED and ev.reason == "doing well for 4 weeks"
    f, ev = apply(f, "review_close", C, None, T0 + 41 * 24 * H)
    assert f.status == FlagStatus.CLOSED and ev.kind == "flag:closed"
    for a in FlagAction:
        with pytest.raises(InvalidTransition):
            apply(f, a, C, "r", T0 + 42 * 24 * H)


def test_yellow_closes_directly_with_reason():
    f = walk(Y)
    for a in ("acknowledge", "confirm", "start_intervention", "start_monitoring"):
        f, _ = apply(f, a, C, None, T0)
    with pytest.raises(ValidationFailed):
        apply(f, "close", C, "  ", T0)
    f, ev = apply(f, "close", C, "resolved", T0)
    assert f.status == FlagStatus.CLOSED and ev.reason == "resolved"


def test_dismiss_as_false_positive_needs_reason():
    f, _ = apply(walk(OR), "acknowledge", C, None, T0)
    with pytest.raises(ValidationFailed):
        apply(f, "dismiss", C, None, T0)
    f2, ev = apply(f, "dismiss", C, "misread item; interview negative", T0)
    assert f2.status == FlagStatus.CLOSED and ev.reason_code == "false_positive" and ev.kind == "flag:dismissed"


def test_change_level_needs_reason_and_a_different_level():
    f, _ = apply(walk(R), "acknowledge", C, None, T0)
    with pytest.raises(ValidationFailed):
        apply(f, "change_level", C, None, T0, new_level=Y)
    with pytest.raises(ValidationFailed):
        apply(f, "change_level", C, "same", T0, new_level=R)
    with pytest.raises(ValidationFailed):
        apply(f, "change_level", C, "none", T0)
    with pytest.raises(ValidationFailed):
        apply(f, "confirm", C, None, T0, new_level=Y)
    f2, ev = apply(f, "change_level", C, "interview: passive thoughts only", T0, new_level=Y)
    assert f2.level == Y and (ev.from_level, ev.to_level) == (R, Y)


def test_head_teacher_cannot_assess_and_monitor_cannot_act():
    f = walk(Y, "concern", reporter_role=Role.CLASS_MONITOR)
    assert f.tier == Tier.CLASS
    for role in (Role.CLASS_MONITOR, Role.SYSADMIN, Role.CLINICIAN, Role.SCHOOL_LEADER):
        with pytest.raises(Forbidden):
            apply(f, "acknowledge", role, None, T0)
    f, _ = apply(f, "acknowledge", HT, None, T0)
    with pytest.raises(Forbidden):
        apply(f, "confirm", HT, None, T0)
    assert allowed_actions(f, Role.CLASS_MONITOR) == []
    assert set(allowed_actions(f, C)) == {FlagAction.CONFIRM, FlagAction.CHANGE_LEVEL, FlagAction.DISMISS,
                                          FlagAction.ESCALATE}


def test_head_teacher_acknowledges_only_at_class_tier():
    with pytest.raises(Forbidden):
        apply(walk(R), "acknowledge", HT, None, T0)


def test_manual_escalation_moves_tier_not_status_and_needs_reason():
    f = walk(Y, "concern", reporter_role=Role.CLASS_MONITOR)
    with pytest.raises(ValidationFailed):
        apply(f, "escalate", HT, "", T0)
    f2, ev = apply(f, "escalate", HT, "looks serious", T0 + H)
    assert (f2.tier, f2.status, f2.tier_entered_at, f2.ack_due_at) == (Tier.SCHOOL, FlagStatus.RAISED, T0 + H,
                                                                       T0 + 73 * H)
    assert (ev.from_tier, ev.to_tier, ev.reason_code) == (Tier.CLASS, Tier.SCHOOL, "manual")
    with pytest.raises(Forbidden):
        apply(f2, "escalate", HT, "again", T0)  # the head teacher no longer holds it
    f3, _ = apply(f2, "escalate", Role.SCHOOL_LEADER, "needs county", T0)
    f4, _ = apply(f3, "escalate", Role.COUNTY_OFFICER, "needs city", T0)
    assert f4.tier == Tier.CITY
    with pytest.raises(Forbidden):
        apply(f4, "escalate", Role.CITY_OFFICER, "higher?", T0)


def test_watch_only_flag_cannot_be_escalated_beyond_school_until_confirmed():
    f = walk(Y, "model", is_watch=True)
    with pytest.raises(InvalidTransition):
        apply(f, "escalate", C, "x", T0)
    f, _ = apply(f, "acknowledge", C, None, T0)
    f, _ = apply(f, "confirm", C, None, T0)
    assert not f.is_watch
    f, _ = apply(f, "escalate", C, "family refuses contact", T0)
    assert f.tier == Tier.COUNTY


def test_watch_flag_is_at_most_yellow():
    with pytest.raises(ValidationFailed):
        raise_flag(OR, "model", T0, is_watch=True)


def test_evidence_raises_level_and_only_shortens_deadlines():
    f = walk(Y)  # ack due T0+72h
    f2, ev = add_evidence(f, R, T0 + 70 * H)
    assert f2.level == R and ev.kind == "flag:level_raised"
    assert f2.ack_due_at == T0 + 71 * H and f2.handle_due_at == T0 + 94 * H
    f3, ev = add_evidence(f2, Y, T0 + 71 * H)
    assert f3 == f2 and ev is None
    w = walk(Y, "model", is_watch=True)
    w2, ev = add_evidence(w, Y, T0, watch_only=False)
    assert not w2.is_watch and ev is not None
    closed = FlagState(R, Tier.SCHOOL, FlagStatus.CLOSED, T0, T0, None, None)
    with pytest.raises(InvalidTransition):
        add_evidence(closed, R, T0)


def test_higher_level_after_the_interview_sends_the_flag_back_to_triage():
    f = walk(Y)
    for a in ("acknowledge", "confirm", "start_monitoring"):
        f, _ = apply(f, a, C, None, T0)
    assert f.ack_due_at is None and f.handle_due_at is None
    f2, ev = add_evidence(f, R, T0 + 100 * H)
    assert (f2.status, f2.level, f2.ack_due_at, f2.handle_due_at) == (FlagStatus.RAISED, R, T0 + 101 * H,
                                                                      T0 + 124 * H)
    assert (ev.from_status, ev.to_status, ev.reason_code) == (FlagStatus.MONITORING, FlagStatus.RAISED,
                                                              "evidence_retriage")
    assert due_escalation(f2, T0 + 101 * H).to_tier == Tier.COUNTY
    # the same level again changes nothing
    f3, ev = add_evidence(f, Y, T0 + 100 * H)
    assert f3 == f and ev is None


def _past(f, *actions, role=C):
    for a in actions:
        f, _ = apply(f, a, role, "because", T0)
    return f


MONITORED = ("acknowledge", "confirm", "start_monitoring")


def test_screening_evidence_moves_a_class_tier_flag_to_the_school_and_back_to_triage():
    """Defect A: a monitor's concern (class tier, acknowledged by the head teacher) then PHQ-9 item 9."""
    f = _past(walk(Y, "concern", reporter_role=Role.CLASS_MONITOR), "acknowledge", role=HT)
    at = T0 + 2 * H
    f2, ev = add_evidence(f, R, at, new=[NewEvidence("critical", R), NewEvidence("band", Y)])
    assert (f2.tier, f2.status, f2.level) == (Tier.SCHOOL, FlagStatus.RAISED, R)
    assert (f2.tier_entered_at, f2.ack_due_at, f2.handle_due_at) == (at, at + H, at + 24 * H)
    assert f2.escalations == 0 and f2.opened_at == T0
    assert (ev.kind, ev.reason_code, ev.from_tier, ev.to_tier, ev.from_status, ev.to_status, ev.actor_role) == (
        "flag:escalated", "evidence_start_tier", Tier.CLASS, Tier.SCHOOL, FlagStatus.ACKNOWLEDGED,
        FlagStatus.RAISED, None)
    # only the counsellor may acknowledge it now
    assert FlagAction.ACKNOWLEDGE not in allowed_actions(f2, HT)
    assert FlagAction.ACKNOWLEDGE in allowed_actions(f2, C)


@pytest.mark.parametrize(("source", "reporter", "tier"), [
    ("band", None, Tier.SCHOOL), ("critical_unanswered", None, Tier.SCHOOL), ("deterioration", None, Tier.SCHOOL),
    ("model", None, Tier.SCHOOL), ("concern", Role.HEAD_TEACHER, Tier.SCHOOL), ("concern", C, Tier.SCHOOL),
    ("concern", Role.CLASS_MONITOR, Tier.CLASS)])
def test_each_source_moves_a_class_tier_flag_to_where_it_starts(source, reporter, tier):
    f = walk(Y, "concern", reporter_role=Role.CLASS_MONITOR)  # still raised: the head teacher has not acted
    f2, ev = add_evidence(f, Y, T0 + H, new=[NewEvidence(source, Y, reporter)], watch_only=source == "model")
    assert f2.tier == tier and f2.status == FlagStatus.RAISED
    if tier == Tier.CLASS:
        assert f2 == f and ev is None
    else:
        assert (f2.tier_entered_at, f2.ack_due_at) == (T0 + H, T0 + 73 * H) and ev.reason_code == "evidence_start_tier"


def test_evidence_never_moves_a_flag_down():
    f, _ = apply(walk(OR), "escalate", C, "family refuses contact", T0)
    assert f.tier == Tier.COUNTY
    for e in (NewEvidence("band", OR), NewEvidence("concern", Y, Role.CLASS_MONITOR)):
        f2, ev = add_evidence(f, e.level, T0 + H, new=[e])
        assert f2 == f and ev is None


def test_a_tier_move_past_the_interview_keeps_the_status_unless_the_evidence_retriages():
    """A counsellor interviewed a class-tier flag: a routine band moves it to the school (the counsellor's
    tier) without re-opening triage; a critical item does re-open it."""
    f = _past(walk(Y, "concern", reporter_role=Role.CLASS_MONITOR), *MONITORED)
    f2, ev = add_evidence(f, Y, T0 + H, new=[NewEvidence("band", Y)])
    assert (f2.tier, f2.status, f2.ack_due_at, f2.handle_due_at) == (Tier.SCHOOL, FlagStatus.MONITORING, None, None)
    assert ev.kind == "flag:escalated" and ev.reason_code == "evidence_start_tier"
    f3, ev = add_evidence(f, Y, T0 + H, new=[NewEvidence("deterioration", Y)])
    assert (f3.tier, f3.status, f3.ack_due_at) == (Tier.SCHOOL, FlagStatus.RAISED, T0 + 73 * H)
    assert ev.reason_code == "evidence_start_tier"


@pytest.mark.parametrize("status_path", [MONITORED, ("acknowledge", "confirm"),
                                         ("acknowledge", "confirm", "start_intervention"),
                                         ("acknowledge", "confirm", "refer")])
@pytest.mark.parametrize("evidence", [NewEvidence("critical", R), NewEvidence("critical_unanswered", R),
                                      NewEvidence("concern", R, Role.HEAD_TEACHER),
                                      NewEvidence("concern", R, Role.CLASS_MONITOR)])
def test_serious_evidence_at_the_same_level_after_the_interview_sends_the_flag_back_to_triage(status_path, evidence):
    """Defect B: a red flag past the interview gets a new critical answer or concern at its own level."""
    f = _past(walk(R), *status_path)
    at = T0 + 20 * 24 * H
    f2, ev = add_evidence(f, R, at, new=[evidence])
    assert (f2.status, f2.level, f2.tier, f2.ack_due_at, f2.handle_due_at) == (
        FlagStatus.RAISED, R, Tier.SCHOOL, at + H, at + 24 * H)
    assert f2.tier_entered_at == f.tier_entered_at  # the tier did not change
    assert (ev.kind, ev.reason_code, ev.from_status, ev.to_status) == (
        "flag:retriaged", "evidence_retriage", f.status, FlagStatus.RAISED)
    assert due_escalation(f2, at + H).to_tier == Tier.COUNTY


def test_serious_evidence_after_acknowledging_asks_for_a_fresh_acknowledgement_without_a_later_interview():
    f = _past(walk(R), "acknowledge")  # handle due T0+24h
    f2, ev = add_evidence(f, R, T0 + 20 * H, new=[NewEvidence("critical", R)])
    assert (f2.status, f2.ack_due_at, f2.handle_due_at) == (FlagStatus.RAISED, T0 + 21 * H, T0 + 24 * H)
    assert ev.kind == "flag:retriaged"


def test_what_does_not_retriage():
    """Routine repeats at the flag's level, evidence below it, and anything while the flag is still raised."""
    m = _past(walk(R), *MONITORED)
    for e in (NewEvidence("band", R), NewEvidence("model", Y), NewEvidence("critical", OR),
              NewEvidence("concern", Y, Role.HEAD_TEACHER), NewEvidence("deterioration", Y)):
        f2, ev = add_evidence(m, e.level, T0 + H, new=[e], watch_only=e.source == "model")
        assert f2 == m and ev is None, e
    raised = walk(R)
    f2, ev = add_evidence(raised, R, T0 + H, new=[NewEvidence("critical", R)])
    assert f2 == raised and ev is None
    # no description of the new evidence (older callers): only a level rise counts, as before
    f2, ev = add_evidence(m, R, T0 + H)
    assert f2 == m and ev is None


def test_any_evidence_after_a_close_request_cancels_it():
    f = _past(walk(R), *MONITORED)
    f, _ = apply(f, "request_close", HT, "stable for 4 weeks", T0)
    for e in (NewEvidence("band", Y), NewEvidence("model", Y), NewEvidence("concern", Y, Role.CLASS_MONITOR)):
        f2, ev = add_evidence(f, e.level, T0 + H, new=[e], watch_only=e.source == "model")
        assert (f2.status, f2.level, f2.ack_due_at, f2.handle_due_at) == (FlagStatus.RAISED, R, T0 + 2 * H,
                                                                          T0 + 25 * H)
        assert (ev.kind, ev.from_status, ev.reason_code) == ("flag:retriaged", FlagStatus.CLOSE_REQUESTED,
                                                             "evidence_retriage")
        with pytest.raises(InvalidTransition):
            apply(f2, "review_close", C, None, T0 + 2 * H)


def test_a_level_rise_and_a_tier_move_together_are_one_event():
    f = _past(walk(Y, "concern", reporter_role=Role.CLASS_MONITOR), *MONITORED)
    f2, ev = add_evidence(f, R, T0 + H, new=[NewEvidence("critical", R)])
    assert (f2.level, f2.tier, f2.status) == (R, Tier.SCHOOL, FlagStatus.RAISED)
    assert (ev.kind, ev.from_level, ev.to_level, ev.from_tier, ev.to_tier) == (
        "flag:escalated", Y, R, Tier.CLASS, Tier.SCHOOL)


def test_retriage_sources_are_policy_data():
    default = _default_policy_text()
    text = default.replace('sources = ["critical", "critical_unanswered", "concern", "deterioration"]',
                           'sources = ["critical", "band"]')
    assert text != default
    p = parse_escalation_policy(text)
    assert p.retriage_sources == frozenset({"critical", "band"})
    m = _past(walk(R), *MONITORED)
    f2, ev = add_evidence(m, R, T0 + H, new=[NewEvidence("band", R)], policy=p)
    assert f2.status == FlagStatus.RAISED and ev.kind == "flag:retriaged"
    f3, ev = add_evidence(m, R, T0 + H, new=[NewEvidence("concern", R, HT)], policy=p)
    assert f3 == m and ev is None
    with pytest.raises(ValidationFailed) as e:
        parse_escalation_policy(text.replace('sources = ["critical", "band"]', 'sources = ["critical", "rumour"]'))
    assert any(err["field"] == "retriage.sources" for err in e.value.errors)
    assert default_escalation_policy().retriage_on_close_requested


def _default_policy_text() -> str:
    from importlib import resources

    return resources.files("mh_platform.core").joinpath("escalation_policy.toml").read_text(encoding="utf-8")


def test_unknown_action_and_stale_escalation():
    f = walk(R)
    with pytest.raises(InvalidTransition):
        apply(f, "delete", C, None, T0)
    step = due_escalation(f, T0 + H)
    moved, _ = apply_escalation(f, step)
    with pytest.raises(InvalidTransition):
        apply_escalation(moved, step)  # from_tier no longer matches: a second sweep must not double-escalate


def test_every_transition_is_reachable_by_some_role():
    for t in TRANSITIONS:
        assert t.actors, t.action
        assert t.sources <= OPEN_STATUSES, t.action


# ----------------------------------------------------------------------------- the state machine

REACHED: set[FlagStatus] = set()
ROLES = list(Role)
REASONS = st.one_of(st.none(), st.just(""), st.just("   "), st.text(min_size=1, max_size=8))
NEEDS_REASON = {t.action for t in TRANSITIONS if t.needs_reason}
FORBIDDEN_FOR = {Role.CLASS_MONITOR, Role.SYSADMIN, Role.CLINICIAN}


class FlagMachine(RuleBasedStateMachine):
    """Random actors, actions, reasons, evidence and sweeps; the invariants below must always hold."""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.flag: FlagState | None = None
        self.events: list = []

    @precondition(lambda self: self.flag is None)
    @rule(level=st.sampled_from(list(Level)), source=st.sampled_from(["screening", "concern", "model"]),
          reporter=st.sampled_from([Role.CLASS_MONITOR, Role.HEAD_TEACHER]))
    def raise_(self, level, source, reporter):
        watch = source == "model"
        self.flag, ev = raise_flag(Y if watch else level, source, self.now, reporter_role=reporter, is_watch=watch)
        self.events.append(ev)

    @precondition(lambda self: self.flag is not None)
    @rule(action=st.sampled_from(list(FlagAction)), role=st.sampled_from(ROLES), reason=REASONS,
          new_level=st.one_of(st.none(), st.sampled_from(list(Level))))
    def act(self, action, role, reason, new_level):
        before = self.flag
        try:
            after, ev = apply(before, action, role, reason, self.now, new_level=new_level)
        except (InvalidTransition, Forbidden, ValidationFailed):
            assert self.flag == before
            return
        assert role not in FORBIDDEN_FOR
        if action in NEEDS_REASON:
            assert ev.reason and ev.reason.strip(), "a required reason was skipped"
        if LEVEL_RANK[after.level] < LEVEL_RANK[before.level]:
            assert action == FlagAction.CHANGE_LEVEL and ev.reason
        if after.status == FlagStatus.CLOSED and before.level in (R, OR):
            assert action in (FlagAction.REVIEW_CLOSE, FlagAction.DISMISS) and role == Role.COUNSELLOR
        if action == FlagAction.ESCALATE:
            assert after.status == before.status and TIER_ORDER.index(after.tier) == TIER_ORDER.index(before.tier) + 1
        else:
            assert after.tier == before.tier
        self.flag = after
        self.events.append(ev)

    @precondition(lambda self: self.flag is not None and self.flag.status != FlagStatus.CLOSED)
    @rule(data=st.data())
    def act_legally(self, data):
        """Mostly-valid steps by a role that may act, so runs reach the late statuses."""
        moves = [(a, role) for role in (C, HT, Role.SCHOOL_LEADER, Role.COUNTY_OFFICER, Role.CITY_OFFICER)
                 for a in allowed_actions(self.flag, role) if a != FlagAction.DISMISS]  # `act` covers dismiss
        if not moves:
            return
        action, role = data.draw(st.sampled_from(moves))
        new_level = data.draw(st.sampled_from([lv for lv in Level if lv != self.flag.level])) \
            if action == FlagAction.CHANGE_LEVEL else None
        self.act(action, role, "because", new_level)  # `act` covers missing reasons

    @precondition(lambda self: self.flag is not None and self.flag.status != FlagStatus.CLOSED)
    @rule(level=st.sampled_from(list(Level)), watch=st.booleans(),
          source=st.sampled_from(["band", "critical", "critical_unanswered", "deterioration", "concern"]),
          reporter=st.sampled_from([Role.CLASS_MONITOR, Role.HEAD_TEACHER, C]), described=st.booleans())
    def evidence(self, level, watch, source, reporter, described):
        before = self.flag
        if watch and level != Y:
            with pytest.raises(ValidationFailed):
                add_evidence(before, level, self.now, watch_only=watch)
            return
        piece = NewEvidence("model" if watch else source, level, reporter if source == "concern" else None)
        new = [piece] if described else []
        after, ev = add_evidence(before, level, self.now, watch_only=watch, new=new)
        assert LEVEL_RANK[after.level] >= LEVEL_RANK[before.level]
        assert TIER_ORDER.index(after.tier) >= TIER_ORDER.index(before.tier), "evidence never moves a flag down"
        assert after.status in (before.status, FlagStatus.RAISED)
        if new and before.status == FlagStatus.CLOSE_REQUESTED:
            assert after.status == FlagStatus.RAISED, "evidence after a close request re-opens triage"
        if (new and before.status != FlagStatus.RAISED and piece.source in default_escalation_policy().retriage_sources
                and LEVEL_RANK[level] >= LEVEL_RANK[before.level]):
            assert after.status == FlagStatus.RAISED and after.ack_due_at is not None, "serious evidence is triaged"
        if new and not watch and before.tier == Tier.CLASS and not (
                source == "concern" and reporter == Role.CLASS_MONITOR):
            assert after.tier == Tier.SCHOOL, "evidence reaches the tier its source starts at"
        if ev is not None:
            self.events.append(ev)
        self.flag = after

    @rule(hours=st.integers(min_value=0, max_value=200))
    def time_passes(self, hours):
        self.now += timedelta(hours=hours)

    @precondition(lambda self: self.flag is not None)
    @rule()
    def sweep(self):
        step = due_escalation(self.flag, self.now)
        if step is None:
            return
        assert self.flag.status != FlagStatus.CLOSED
        before = self.flag
        self.flag, ev = apply_escalation(before, step)
        self.events.append(ev)
        assert due_escalation(self.flag, self.now) is None, "one step per missed deadline"
        assert TIER_ORDER.index(self.flag.tier) >= TIER_ORDER.index(before.tier)

    @invariant()
    def consistent(self):
        f = self.flag
        if f is None:
            return
        REACHED.add(f.status)
        assert f.status in FlagStatus
        if f.status != FlagStatus.RAISED:
            assert f.ack_due_at is None
        if f.status not in (FlagStatus.RAISED, FlagStatus.ACKNOWLEDGED):
            assert f.handle_due_at is None
        if f.is_watch:
            assert f.level == Y and TIER_ORDER.index(f.tier) <= TIER_ORDER.index(Tier.SCHOOL)
        closed_at = [i for i, e in enumerate(self.events) if e.to_status == FlagStatus.CLOSED]
        if closed_at:
            assert closed_at[0] == len(self.events) - 1, "closed is terminal"
        # the event history replays to the current state
        last = self.events[-1]
        assert (last.to_status, last.to_tier, last.to_level) == (f.status, f.tier, f.level)


FlagMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=50, deadline=None, derandomize=True,
                                         suppress_health_check=[HealthCheck.too_slow])
TestFlagMachine = FlagMachine.TestCase


def test_state_machine_reached_every_status():
    """Runs after the machine (file order): its random walks reached every status, closed included."""
    if not REACHED:  # run alone (e.g. -k): walk the machine here first
        TestFlagMachine("runTest").runTest()
    assert set(FlagStatus) == REACHED


def test_the_escalation_policy_knows_every_evidence_source():
    from mh_platform.core.escalation import EVIDENCE_SOURCES, start_tier
    from mh_platform.core.flag_rules import EvidenceSource

    assert {s.value for s in EvidenceSource} == EVIDENCE_SOURCES
    for s in EVIDENCE_SOURCES:
        start_tier(s)  # every source has a start tier
