"""The flag lifecycle as a transition table (data); anything not in the table is refused.

raised → acknowledged → assessed (interview: confirm, change level with a reason, or dismiss as a
false positive with a reason → closed) → intervention / referral → monitoring → closed.
Closing needs a reason; red and orange flags close only through ``request_close`` and the
counsellor's ``review_close``. Escalation (the sweep, or by hand) changes the tier, never the status.
New evidence (``add_evidence``) may raise the level, move the flag up to the tier its source starts
at, and send a flag past triage back to ``raised``. Closed is terminal.

Invariants (tests/unit/test_flag_lifecycle.py checks them with a hypothesis state machine):
the level only goes down through ``change_level`` with a reason; every action that needs a reason
gets one; tiers only go up (except when the student moves to another school: ``relocate``); a
watch-only flag never leaves the school.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from mh_platform.core.errors import Forbidden, InvalidTransition, ValidationFailed
from mh_platform.core.escalation import (
    EscalationPolicy,
    EscalationStep,
    ceiling_for,
    default_escalation_policy,
    start_tier,
    tier_rank,
)
from mh_platform.core.i18n import N_
from mh_platform.core.types import LEVEL_RANK, Level, Role, Tier, next_tier


class FlagStatus(StrEnum):
    """Where a flag is in its lifecycle; ``closed`` is terminal."""

    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    ASSESSED = "assessed"
    INTERVENTION = "intervention"
    REFERRAL = "referral"
    MONITORING = "monitoring"
    CLOSE_REQUESTED = "close_requested"
    CLOSED = "closed"


OPEN_STATUSES: frozenset[FlagStatus] = frozenset(FlagStatus) - {FlagStatus.CLOSED}


class FlagAction(StrEnum):
    """What a person can do to a flag (system events — raise, evidence, sweep — have their own functions)."""

    ACKNOWLEDGE = "acknowledge"
    CHANGE_LEVEL = "change_level"
    CLOSE = "close"
    CONFIRM = "confirm"
    DISMISS = "dismiss"
    ESCALATE = "escalate"
    REFER = "refer"
    REJECT_CLOSE = "reject_close"
    REQUEST_CLOSE = "request_close"
    REVIEW_CLOSE = "review_close"
    START_INTERVENTION = "start_intervention"
    START_MONITORING = "start_monitoring"


class FlagEventKind(StrEnum):
    """Event kinds, named ``flag:<past tense>``; every change of a flag is exactly one event."""

    ACKNOWLEDGED = "flag:acknowledged"
    CLOSE_REJECTED = "flag:close_rejected"
    CLOSE_REQUESTED = "flag:close_requested"
    CLOSED = "flag:closed"
    CONFIRMED = "flag:confirmed"
    DISMISSED = "flag:dismissed"
    ESCALATED = "flag:escalated"
    INTERVENTION_STARTED = "flag:intervention_started"
    LEVEL_CHANGED = "flag:level_changed"
    LEVEL_RAISED = "flag:level_raised"
    MONITORING_STARTED = "flag:monitoring_started"
    RAISED = "flag:raised"
    REFERRED = "flag:referred"
    REMINDED = "flag:reminded"
    RETRIAGED = "flag:retriaged"
    TRANSFERRED = "flag:transferred"


ALL_TIERS: frozenset[Tier] = frozenset(Tier)
ALL_LEVELS: frozenset[Level] = frozenset(Level)


@dataclass(frozen=True)
class Transition:
    """One row of the table: ``action`` from any of ``sources`` to ``target`` (None = status unchanged),
    by these roles at these tiers, for these levels, with or without a mandatory reason."""

    action: FlagAction
    sources: frozenset[FlagStatus]
    target: FlagStatus | None
    event: FlagEventKind
    actors: Mapping[Role, frozenset[Tier]]
    needs_reason: bool = False
    levels: frozenset[Level] = ALL_LEVELS


_C = Role.COUNSELLOR
_S = FlagStatus
_ANY_OPEN = frozenset(OPEN_STATUSES)

TRANSITIONS: tuple[Transition, ...] = (
    Transition(FlagAction.ACKNOWLEDGE, frozenset({_S.RAISED}), _S.ACKNOWLEDGED, FlagEventKind.ACKNOWLEDGED,
               {Role.HEAD_TEACHER: frozenset({Tier.CLASS}), _C: ALL_TIERS,
                Role.COUNTY_OFFICER: frozenset({Tier.COUNTY, Tier.CITY}), Role.CITY_OFFICER: frozenset({Tier.CITY})}),
    Transition(FlagAction.CONFIRM, frozenset({_S.ACKNOWLEDGED}), _S.ASSESSED, FlagEventKind.CONFIRMED,
               {_C: ALL_TIERS}),
    Transition(FlagAction.CHANGE_LEVEL, frozenset({_S.ACKNOWLEDGED}), _S.ASSESSED, FlagEventKind.LEVEL_CHANGED,
               {_C: ALL_TIERS}, needs_reason=True),
    Transition(FlagAction.DISMISS, frozenset({_S.ACKNOWLEDGED}), _S.CLOSED, FlagEventKind.DISMISSED,
               {_C: ALL_TIERS}, needs_reason=True),
    Transition(FlagAction.START_INTERVENTION, frozenset({_S.ASSESSED}), _S.INTERVENTION,
               FlagEventKind.INTERVENTION_STARTED, {_C: ALL_TIERS}),
    Transition(FlagAction.REFER, frozenset({_S.ASSESSED, _S.INTERVENTION}), _S.REFERRAL, FlagEventKind.REFERRED,
               {_C: ALL_TIERS}),
    Transition(FlagAction.START_MONITORING, frozenset({_S.ASSESSED, _S.INTERVENTION, _S.REFERRAL}), _S.MONITORING,
               FlagEventKind.MONITORING_STARTED, {_C: ALL_TIERS}),
    Transition(FlagAction.CLOSE, frozenset({_S.MONITORING}), _S.CLOSED, FlagEventKind.CLOSED,
               {_C: ALL_TIERS}, needs_reason=True, levels=frozenset({Level.YELLOW})),
    Transition(FlagAction.REQUEST_CLOSE, frozenset({_S.MONITORING}), _S.CLOSE_REQUESTED, FlagEventKind.CLOSE_REQUESTED,
               {Role.HEAD_TEACHER: ALL_TIERS, _C: ALL_TIERS}, needs_reason=True),
    Transition(FlagAction.REVIEW_CLOSE, frozenset({_S.CLOSE_REQUESTED}), _S.CLOSED, FlagEventKind.CLOSED,
               {_C: ALL_TIERS}),
    Transition(FlagAction.REJECT_CLOSE, frozenset({_S.CLOSE_REQUESTED}), _S.MONITORING, FlagEventKind.CLOSE_REJECTED,
               {_C: ALL_TIERS}, needs_reason=True),
    Transition(FlagAction.ESCALATE, _ANY_OPEN, None, FlagEventKind.ESCALATED,
               {Role.HEAD_TEACHER: frozenset({Tier.CLASS}), _C: frozenset({Tier.CLASS, Tier.SCHOOL}),
                Role.SCHOOL_LEADER: frozenset({Tier.SCHOOL}), Role.COUNTY_OFFICER: frozenset({Tier.COUNTY})},
               needs_reason=True),
)

TRANSITION_BY: dict[tuple[FlagAction, FlagStatus], Transition] = {
    (t.action, s): t for t in TRANSITIONS for s in t.sources
}

# Statuses in which each deadline runs: acknowledge while raised; handle until assessed.
ACK_CLOCK: frozenset[FlagStatus] = frozenset({_S.RAISED})
HANDLE_CLOCK: frozenset[FlagStatus] = frozenset({_S.RAISED, _S.ACKNOWLEDGED})


@dataclass(frozen=True)
class FlagState:
    """What the rules need of a flag (mirrors db.flags.Flag columns). Deadlines are None when not running."""

    level: Level
    tier: Tier
    status: FlagStatus
    opened_at: datetime
    tier_entered_at: datetime
    ack_due_at: datetime | None
    handle_due_at: datetime | None
    is_watch: bool = False
    escalations: int = 0
    county_informed_at: datetime | None = None
    city_informed_at: datetime | None = None


@dataclass(frozen=True)
class FlagEvent:
    """One change, for the hash-chained log: what, when, who (role), from → to, and the reason (encrypt it)."""

    kind: FlagEventKind
    at: datetime
    actor_role: Role | None
    from_status: FlagStatus | None
    to_status: FlagStatus
    from_tier: Tier | None
    to_tier: Tier
    from_level: Level | None
    to_level: Level
    reason: str | None = None
    reason_code: str | None = None


def _deadlines(level: Level, tier: Tier, status: FlagStatus, since: datetime,
               policy: EscalationPolicy) -> tuple[datetime | None, datetime | None]:
    d = policy.levels[level].deadlines_at(tier)
    ack = since + d.ack_within if status in ACK_CLOCK else None
    handle = since + d.handle_within if status in HANDLE_CLOCK else None
    return ack, handle


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None or b is None:
        return a if b is None else b
    return min(a, b)


def _event(kind: FlagEventKind, old: FlagState | None, new: FlagState, now: datetime, role: Role | None,
           reason: str | None = None, reason_code: str | None = None) -> FlagEvent:
    return FlagEvent(kind, now, role, old.status if old else None, new.status, old.tier if old else None, new.tier,
                     old.level if old else None, new.level, reason, reason_code)


def raise_flag(level: Level, source: str, now: datetime, *, reporter_role: Role | None = None,
               is_watch: bool = False, policy: EscalationPolicy | None = None) -> tuple[FlagState, FlagEvent]:
    """A new open flag at the tier the policy gives ``source`` (class for a monitor's concern), clocks started."""
    p = policy or default_escalation_policy()
    if is_watch and LEVEL_RANK[level] > LEVEL_RANK[Level.YELLOW]:
        raise ValidationFailed(N_("a watch-only flag is at most yellow"), [{"field": "level", "value": level.value}])
    tier = start_tier(source, reporter_role, p)
    if is_watch and tier_rank(tier) > tier_rank(p.watch_ceiling):
        tier = p.watch_ceiling
    ack, handle = _deadlines(level, tier, FlagStatus.RAISED, now, p)
    state = FlagState(level, tier, FlagStatus.RAISED, now, now, ack, handle, is_watch=is_watch)
    return state, _event(FlagEventKind.RAISED, None, state, now, reporter_role, reason_code=source)


def _need_reason(reason: str | None) -> str:
    if reason is None or not reason.strip():
        raise ValidationFailed(N_("a reason is required"), [{"field": "reason", "error": "required"}])
    return reason.strip()


def check(state: FlagState, action: FlagAction | str, actor_role: Role,
          policy: EscalationPolicy | None = None) -> Transition:
    """The table row that allows ``actor_role`` to do ``action`` now; InvalidTransition / Forbidden otherwise."""
    try:
        action = FlagAction(action)
    except ValueError:
        raise InvalidTransition(f"unknown action {action!r}") from None
    if state.status == FlagStatus.CLOSED:
        raise InvalidTransition(N_("the flag is closed"))
    t = TRANSITION_BY.get((action, state.status))
    if t is None:
        raise InvalidTransition(N_("cannot %(action)s a flag that is %(status)s"),
                                params={"action": action.value, "status": state.status.value})
    if state.level not in t.levels:
        raise InvalidTransition(N_("a %(level)s flag cannot %(action)s; request a counsellor review"),
                                params={"level": state.level.value, "action": action.value})
    if state.tier not in t.actors.get(actor_role, frozenset()):
        raise Forbidden(N_("%(role)s may not %(action)s a flag at the %(tier)s tier"),
                        params={"role": actor_role.value, "action": action.value, "tier": state.tier.value})
    if action == FlagAction.ESCALATE:
        up = next_tier(state.tier)
        if up is None:
            raise InvalidTransition(N_("the flag is already at the city tier"))
        if state.is_watch and tier_rank(up) > tier_rank((policy or default_escalation_policy()).watch_ceiling):
            raise InvalidTransition(N_("a watch-only flag stays at the school; confirm it first"))
    return t


def allowed_actions(state: FlagState, actor_role: Role,
                    policy: EscalationPolicy | None = None) -> list[FlagAction]:
    """Actions ``actor_role`` may take on the flag now (for buttons and API discovery)."""
    out = []
    for a in FlagAction:
        try:
            check(state, a, actor_role, policy)
        except (InvalidTransition, Forbidden):
            continue
        out.append(a)
    return out


def apply(state: FlagState, action: FlagAction | str, actor_role: Role, reason: str | None, now: datetime, *,
          new_level: Level | None = None, policy: EscalationPolicy | None = None) -> tuple[FlagState, FlagEvent]:
    """Perform one person's action; refuses anything not in TRANSITIONS, a missing reason, or a bad new level."""
    p = policy or default_escalation_policy()
    t = check(state, action, actor_role, p)
    if t.needs_reason:
        reason = _need_reason(reason)
    elif reason is not None and not reason.strip():
        reason = None
    level = state.level
    if t.action == FlagAction.CHANGE_LEVEL:
        if new_level is None or Level(new_level) == state.level:
            raise ValidationFailed(N_("change_level needs a different level"),
                                   [{"field": "new_level", "error": "required and different"}])
        level = Level(new_level)
    elif new_level is not None:
        raise ValidationFailed(N_("only change_level takes a new level"), [{"field": "new_level", "error": "unexpected"}])
    if t.action == FlagAction.ESCALATE:
        up = next_tier(state.tier)
        assert up is not None
        ack, handle = _deadlines(level, up, state.status, now, p)
        new = replace(state, tier=up, tier_entered_at=now, ack_due_at=ack, handle_due_at=handle,
                      escalations=state.escalations + 1)
        return new, _event(t.event, state, new, now, actor_role, reason, "manual")
    assert t.target is not None
    status = t.target
    ack = state.ack_due_at if status in ACK_CLOCK else None
    handle = state.handle_due_at if status in HANDLE_CLOCK else None
    human_assessed = t.action in (FlagAction.CONFIRM, FlagAction.CHANGE_LEVEL)
    new = replace(state, status=status, level=level, ack_due_at=ack, handle_due_at=handle,
                  is_watch=state.is_watch and not human_assessed)
    code = "false_positive" if t.action == FlagAction.DISMISS else None
    return new, _event(t.event, state, new, now, actor_role, reason, code)


@dataclass(frozen=True)
class NewEvidence:
    """A piece of evidence not yet on the flag, as the lifecycle needs it: its source (a
    ``flag_rules.EvidenceSource`` value), its level, and for a concern the reporter's role (together
    they give the tier a flag from this evidence alone would start at, ``escalation.start_tier``)."""

    source: str
    level: Level
    reporter_role: Role | None = None


def _retriages(state: FlagState, new_level: Level, new: Sequence[NewEvidence], p: EscalationPolicy) -> bool:
    """Does the new evidence send a flag past triage back to ``raised``? (docs/flags.md §3)"""
    if state.status in ACK_CLOCK:
        return False  # still waiting for its acknowledgement: the clocks already run
    if state.status == FlagStatus.CLOSE_REQUESTED and new and p.retriage_on_close_requested:
        return True  # a close assumes the risk has passed; anything new and the counsellor looks again
    if new_level != state.level and state.status not in HANDLE_CLOCK:
        return True  # past the interview a higher level means the situation changed
    return any(e.source in p.retriage_sources and LEVEL_RANK[e.level] >= LEVEL_RANK[state.level] for e in new)


def add_evidence(state: FlagState, level: Level, now: datetime, *, watch_only: bool = False,
                 new: Sequence[NewEvidence] = (), policy: EscalationPolicy | None = None
                 ) -> tuple[FlagState, FlagEvent | None]:
    """Attach evidence to the open flag. ``level`` is the level of all the evidence at hand; ``new``
    describes the pieces the flag does not have yet (only they can move the flag or re-open triage).

    - The level may rise (never fall).
    - **Start tier**: a piece whose source starts at a higher tier than the flag's (a screening, a
      teacher's concern or the model's signal on a class monitor's class-tier flag) moves the flag up
      to that tier — never down, a watch-only flag never above the school. Entering the tier starts
      both clocks from ``now``; a flag acknowledged below it goes back to ``raised`` (the new tier's
      role acknowledges). Event ``flag:escalated``, ``reason_code="evidence_start_tier"``.
    - **Re-triage**: on a flag past triage (acknowledged … close_requested), a level rise after the
      interview, a piece from ``policy.retriage_sources`` at or above the flag's level, or (policy
      ``close_requested = "any"``) any piece on a flag whose close was requested sends the flag back to
      ``raised`` with the acknowledge clock from ``now`` and the handle clock from ``now`` too (an
      acknowledged flag keeps its earlier interview deadline). ``reason_code="evidence_retriage"``,
      event ``flag:retriaged`` (``flag:level_raised`` when the level rose as well).
    - Otherwise the running deadlines only get earlier (``reason_code="evidence"``).

    Returns an event only when something changed (level, tier, status, or the flag stopped being watch-only).
    """
    p = policy or default_escalation_policy()
    if state.status == FlagStatus.CLOSED:
        raise InvalidTransition(N_("evidence for a closed flag opens a new flag (a new episode)"))
    if watch_only and LEVEL_RANK[level] > LEVEL_RANK[Level.YELLOW]:
        raise ValidationFailed(N_("the model's watch signal is at most yellow"), [{"field": "level", "value": level.value}])
    for e in new:
        if LEVEL_RANK[e.level] > LEVEL_RANK[level]:
            level = e.level
    new_level = level if LEVEL_RANK[level] > LEVEL_RANK[state.level] else state.level
    is_watch = state.is_watch and watch_only
    tier = state.tier
    for e in new:
        t = start_tier(e.source, e.reporter_role, p)
        if tier_rank(t) > tier_rank(tier):
            tier = t
    if is_watch and tier_rank(tier) > tier_rank(p.watch_ceiling):
        tier = p.watch_ceiling if tier_rank(p.watch_ceiling) > tier_rank(state.tier) else state.tier
    moved = tier != state.tier
    retriage = _retriages(state, new_level, new, p)
    if new_level == state.level and is_watch == state.is_watch and not moved and not retriage:
        return state, None
    status = FlagStatus.RAISED if retriage or (moved and state.status in HANDLE_CLOCK) else state.status
    if moved:
        # Entering a tier (as on raise or escalation): both clocks from now, for the new tier's role.
        ack, handle = _deadlines(new_level, tier, status, now, p)
        new_state = replace(state, level=new_level, tier=tier, tier_entered_at=now, status=status, is_watch=is_watch,
                            ack_due_at=ack, handle_due_at=handle)
        return new_state, _event(FlagEventKind.ESCALATED, state, new_state, now, None,
                                 reason_code="evidence_start_tier")
    if retriage:
        # Triage again, clocks from now; an interview still to come is not put off by it.
        ack, handle = _deadlines(new_level, tier, FlagStatus.RAISED, now, p)
        if state.status in HANDLE_CLOCK:
            handle = _earlier(state.handle_due_at, handle)
        new_state = replace(state, level=new_level, is_watch=is_watch, status=FlagStatus.RAISED,
                            ack_due_at=ack, handle_due_at=handle)
        kind = FlagEventKind.LEVEL_RAISED if new_level != state.level else FlagEventKind.RETRIAGED
        return new_state, _event(kind, state, new_state, now, None, reason_code="evidence_retriage")
    ack, handle = _deadlines(new_level, state.tier, state.status, now, p)
    new_state = replace(state, level=new_level, is_watch=is_watch,
                        ack_due_at=_earlier(state.ack_due_at, ack) if state.status in ACK_CLOCK else None,
                        handle_due_at=_earlier(state.handle_due_at, handle) if state.status in HANDLE_CLOCK else None)
    return new_state, _event(FlagEventKind.LEVEL_RAISED, state, new_state, now, None, reason_code="evidence")


def apply_escalation(state: FlagState, step: EscalationStep,
                     policy: EscalationPolicy | None = None) -> tuple[FlagState, FlagEvent]:
    """Apply a step from ``escalation.due_escalation``: move up (or remind at the ceiling) and restart the clocks."""
    p = policy or default_escalation_policy()
    if state.status == FlagStatus.CLOSED:
        raise InvalidTransition(N_("the flag is closed"))
    if step.from_tier != state.tier or tier_rank(step.to_tier) < tier_rank(state.tier):
        raise InvalidTransition(N_("stale escalation step"))
    if step.to_tier != state.tier and tier_rank(step.to_tier) > tier_rank(ceiling_for(state.level, state.is_watch, p)):
        raise InvalidTransition(N_("escalation above the ceiling"))
    ack, handle = _deadlines(state.level, step.to_tier, state.status, step.at, p)
    new = replace(state, tier=step.to_tier, tier_entered_at=step.at, ack_due_at=ack, handle_due_at=handle,
                  escalations=state.escalations + 1)
    kind = FlagEventKind.REMINDED if step.is_reminder else FlagEventKind.ESCALATED
    return new, _event(kind, state, new, step.at, None, reason_code=f"missed_{step.missed}")


def reroute(state: FlagState, to_tier: Tier, now: datetime,
            policy: EscalationPolicy | None = None) -> tuple[FlagState, FlagEvent]:
    """Nobody holds the acting role at the flag's tier (``escalation.reachable_tier``): hand it up to
    ``to_tier`` at once, with that tier's clocks from ``now``. An escalation (``reason_code="no_recipient"``),
    allowed above the level's ceiling because it is about who can be reached; at the ceiling or above,
    later missed deadlines are reminders there. Status unchanged; tiers only go up."""
    p = policy or default_escalation_policy()
    if state.status == FlagStatus.CLOSED:
        raise InvalidTransition(N_("the flag is closed"))
    if tier_rank(to_tier) <= tier_rank(state.tier):
        raise InvalidTransition(N_("a flag is handed up, never down or sideways"))
    if state.is_watch and tier_rank(to_tier) > tier_rank(p.watch_ceiling):
        raise InvalidTransition(N_("a watch-only flag stays at the school"))
    ack, handle = _deadlines(state.level, to_tier, state.status, now, p)
    new = replace(state, tier=to_tier, tier_entered_at=now, ack_due_at=ack, handle_due_at=handle,
                  escalations=state.escalations + 1)
    return new, _event(FlagEventKind.ESCALATED, state, new, now, None, reason_code="no_recipient")


def relocate(state: FlagState, now: datetime, *, new_school: bool, start: Tier,
             policy: EscalationPolicy | None = None) -> tuple[FlagState, FlagEvent]:
    """The student moved (the service updates the flag's school, class and unit path).

    Another class of the same school: nothing changes but the place (``student_moved_class``); the
    clocks run on and the new class's head teacher takes over what the old one saw.
    Another school: the flag restarts there (``student_transferred``): ``raised`` at ``start`` but at
    least the school tier (watch-only: at most the watch ceiling), with fresh clocks, because nobody at
    the new school has seen the student yet. The level and the history stay. This is the one change
    that may lower a tier: the old school's tiers no longer answer for the student."""
    p = policy or default_escalation_policy()
    if state.status == FlagStatus.CLOSED:
        raise InvalidTransition(N_("the flag is closed"))
    if not new_school:
        return state, _event(FlagEventKind.TRANSFERRED, state, state, now, None, reason_code="student_moved_class")
    tier = start if tier_rank(start) >= tier_rank(Tier.SCHOOL) else Tier.SCHOOL
    if state.is_watch and tier_rank(tier) > tier_rank(p.watch_ceiling):
        tier = p.watch_ceiling
    ack, handle = _deadlines(state.level, tier, FlagStatus.RAISED, now, p)
    new = replace(state, tier=tier, status=FlagStatus.RAISED, tier_entered_at=now, ack_due_at=ack,
                  handle_due_at=handle)
    return new, _event(FlagEventKind.TRANSFERRED, state, new, now, None, reason_code="student_transferred")


def case_may_open(state: FlagState) -> bool:
    """A case opens only from a flag a counsellor has confirmed by interview (assessed or later, not closed)."""
    return state.status in {_S.ASSESSED, _S.INTERVENTION, _S.REFERRAL, _S.MONITORING, _S.CLOSE_REQUESTED}


__all__ = [
    "ACK_CLOCK", "HANDLE_CLOCK", "OPEN_STATUSES", "TRANSITIONS", "FlagAction", "FlagEvent",
    "FlagEventKind", "FlagState", "FlagStatus", "NewEvidence", "Transition", "add_evidence", "allowed_actions", "apply",
    "apply_escalation", "case_may_open", "check", "raise_flag", "relocate", "reroute",
]
