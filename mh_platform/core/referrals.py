"""Green-channel referral (心理危机转介绿色通道) as a transition table with deadlines from policy data.

draft → requested (guardian consent, or an audited override with a reason when risk is imminent)
→ accepted | declined (structured reason; re-route → requested at another institution)
→ scheduled → attended | no_show (re-schedule) → feedback → school_follow_up → closed.
A counsellor may cancel (with a reason) before attendance. Anything not in TRANSITIONS is refused.

Deadlines (``referral_policy.toml``): each state has a window; until the first attendance the
``first_appointment`` target (from the first request) also applies. A missed deadline moves the
referral one tier up (school → county → city, reminders at the city) with ``chase_within`` for the
new tier; tiers never go down. Pure: ``now`` is passed in.
"""

from __future__ import annotations

import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from mh_platform.core.errors import Forbidden, InvalidTransition, ValidationFailed
from mh_platform.core.escalation import EscalationPolicy, default_escalation_policy, parse_duration
from mh_platform.core.i18n import N_
from mh_platform.core.types import Level, Role, Tier, next_tier

InstitutionRef = uuid.UUID | str


class ReferralState(StrEnum):
    """States of a referral; ``closed`` is terminal."""

    DRAFT = "draft"
    REQUESTED = "requested"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    SCHEDULED = "scheduled"
    ATTENDED = "attended"
    NO_SHOW = "no_show"
    FEEDBACK = "feedback"
    SCHOOL_FOLLOW_UP = "school_follow_up"
    CLOSED = "closed"


class ReferralAction(StrEnum):
    """What a counsellor or clinician can do to a referral."""

    ACCEPT = "accept"
    CANCEL = "cancel"
    CLOSE = "close"
    DECLINE = "decline"
    RECORD_ATTENDED = "record_attended"
    RECORD_FEEDBACK = "record_feedback"
    RECORD_NO_SHOW = "record_no_show"
    REROUTE = "reroute"
    RESCHEDULE = "reschedule"
    SCHEDULE = "schedule"
    START_FOLLOW_UP = "start_follow_up"
    SUBMIT = "submit"


class ConsentBasis(StrEnum):
    """Why the referral may be sent: the guardian consented, or an audited override for imminent risk."""

    GUARDIAN = "guardian"
    OVERRIDE = "override"


S = ReferralState
A = ReferralAction
C, CL = Role.COUNSELLOR, Role.CLINICIAN


@dataclass(frozen=True)
class ReferralTransition:
    """One row: ``action`` from ``source`` to ``target`` by ``roles``, with or without a mandatory reason."""

    action: ReferralAction
    source: ReferralState
    target: ReferralState
    roles: frozenset[Role]
    needs_reason: bool = False


def _t(action: A, sources: tuple[S, ...], target: S, role: Role, needs_reason: bool = False) -> list[ReferralTransition]:
    return [ReferralTransition(action, s, target, frozenset({role}), needs_reason) for s in sources]


TRANSITIONS: tuple[ReferralTransition, ...] = tuple(
    _t(A.SUBMIT, (S.DRAFT,), S.REQUESTED, C)
    + _t(A.ACCEPT, (S.REQUESTED,), S.ACCEPTED, CL)
    + _t(A.DECLINE, (S.REQUESTED,), S.DECLINED, CL)
    + _t(A.REROUTE, (S.DECLINED,), S.REQUESTED, C)
    + _t(A.REROUTE, (S.REQUESTED,), S.REQUESTED, C, needs_reason=True)  # withdraw from a silent institution
    + _t(A.SCHEDULE, (S.ACCEPTED,), S.SCHEDULED, CL)
    + _t(A.RESCHEDULE, (S.NO_SHOW,), S.SCHEDULED, CL)
    + _t(A.RESCHEDULE, (S.SCHEDULED,), S.SCHEDULED, CL, needs_reason=True)
    + _t(A.RECORD_ATTENDED, (S.SCHEDULED,), S.ATTENDED, CL)
    + _t(A.RECORD_NO_SHOW, (S.SCHEDULED,), S.NO_SHOW, CL)
    + _t(A.RECORD_FEEDBACK, (S.ATTENDED,), S.FEEDBACK, CL)
    + _t(A.START_FOLLOW_UP, (S.FEEDBACK,), S.SCHOOL_FOLLOW_UP, C)
    + _t(A.CLOSE, (S.SCHOOL_FOLLOW_UP,), S.CLOSED, C, needs_reason=True)
    + _t(A.CANCEL, (S.DRAFT, S.REQUESTED, S.DECLINED, S.ACCEPTED, S.SCHEDULED, S.NO_SHOW), S.CLOSED, C,
         needs_reason=True)
)

TRANSITION_BY: dict[tuple[ReferralAction, ReferralState], ReferralTransition] = {
    (t.action, t.source): t for t in TRANSITIONS
}

# States in which the first-appointment target still applies (nobody has attended yet).
BEFORE_FIRST_VISIT: frozenset[ReferralState] = frozenset({S.REQUESTED, S.DECLINED, S.ACCEPTED, S.SCHEDULED,
                                                          S.NO_SHOW})
TIMED_STATES: tuple[ReferralState, ...] = (S.REQUESTED, S.DECLINED, S.ACCEPTED, S.SCHEDULED, S.NO_SHOW,
                                           S.ATTENDED, S.FEEDBACK, S.SCHOOL_FOLLOW_UP)


@dataclass(frozen=True)
class ReferralLevelPolicy:
    """Windows for one level: per timed state, the first-appointment target, and the chase window after escalation."""

    windows: Mapping[ReferralState, timedelta]
    first_appointment: timedelta
    chase_within: timedelta


@dataclass(frozen=True)
class ReferralPolicy:
    """The whole referral policy; build it with ``parse_referral_policy`` (validated)."""

    levels: Mapping[Level, ReferralLevelPolicy]
    override_levels: frozenset[Level] = frozenset({Level.RED})
    decline_codes: frozenset[str] = frozenset({"other"})


@dataclass(frozen=True)
class Referral:
    """What the rules need of a referral (mirrors db.cases.Referral). ``requested_at`` is the FIRST request."""

    state: ReferralState
    level: Level
    institution_id: InstitutionRef
    state_entered_at: datetime
    created_at: datetime
    tier: Tier = Tier.SCHOOL
    requested_at: datetime | None = None
    appointment_at: datetime | None = None
    consent_basis: ConsentBasis | None = None
    decline_code: str | None = None
    diagnosis_category: str | None = None
    attended_once: bool = False
    first_appointment_escalated: bool = False
    due_at: datetime | None = None
    escalations: int = 0


@dataclass(frozen=True)
class ReferralEvent:
    """One change, for the log; ``reason`` is free text (encrypt it), ``detail`` codes and times only."""

    kind: str
    at: datetime
    actor_role: Role | None
    from_state: ReferralState | None
    to_state: ReferralState
    from_tier: Tier
    to_tier: Tier
    institution_id: InstitutionRef
    reason: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ReferralEscalationStep:
    """A missed referral deadline: which (a state name or "first_appointment"), from → to tier, who is told."""

    missed: str
    due_at: datetime
    at: datetime
    level: Level
    from_tier: Tier
    to_tier: Tier
    inform: tuple[Role, ...]

    @property
    def is_reminder(self) -> bool:
        """True at the city: the tier stays, the chase window restarts."""
        return self.from_tier == self.to_tier


# ----------------------------------------------------------------------------- policy


def parse_referral_policy(data: Mapping[str, Any] | str) -> ReferralPolicy:
    """Validate a referral policy (TOML text or mapping); every problem listed in ValidationFailed.errors."""
    if isinstance(data, str):
        try:
            data = tomllib.loads(data)
        except tomllib.TOMLDecodeError as exc:
            raise ValidationFailed(f"referral policy is not TOML: {exc}") from exc
    errors: list[dict] = []
    if data.get("format") != 1:
        errors.append({"field": "format", "error": "must be 1"})

    def dur(value: Any, where: str) -> timedelta:
        try:
            return parse_duration(value)
        except ValidationFailed:
            errors.append({"field": where, "error": f"bad duration {value!r}"})
            return timedelta(hours=1)

    levels: dict[Level, ReferralLevelPolicy] = {}
    for level in Level:
        raw = data.get("levels", {}).get(level.value)
        w = f"levels.{level.value}"
        if not isinstance(raw, Mapping):
            errors.append({"field": w, "error": "missing"})
            continue
        levels[level] = ReferralLevelPolicy(
            windows={s: dur(raw.get(s.value), f"{w}.{s.value}") for s in TIMED_STATES},
            first_appointment=dur(raw.get("first_appointment"), f"{w}.first_appointment"),
            chase_within=dur(raw.get("chase_within"), f"{w}.chase_within"),
        )
    order = [Level.RED, Level.ORANGE, Level.YELLOW]
    if len(levels) == len(order):
        for hi, lo in zip(order, order[1:], strict=False):
            if levels[hi].windows[S.REQUESTED] > levels[lo].windows[S.REQUESTED] or (
                    levels[hi].first_appointment > levels[lo].first_appointment):
                errors.append({"field": f"levels.{hi.value}", "error": f"slower than {lo.value}"})
    override: set[Level] = set()
    for x in data.get("consent", {}).get("override_levels", ["red"]):
        try:
            override.add(Level(x))
        except ValueError:
            errors.append({"field": "consent.override_levels", "error": f"unknown level {x!r}"})
    codes = data.get("decline_reasons", {}).get("codes", ["other"])
    if not codes or not all(isinstance(c, str) and c for c in codes):
        errors.append({"field": "decline_reasons.codes", "error": "non-empty list of codes"})
    if errors:
        raise ValidationFailed(N_("invalid referral policy"), errors)
    return ReferralPolicy(levels, frozenset(override), frozenset(codes))


@cache
def default_referral_policy() -> ReferralPolicy:
    """The packaged default referral policy, parsed once."""
    text = resources.files("mh_platform.core").joinpath("referral_policy.toml").read_text(encoding="utf-8")
    return parse_referral_policy(text)


# ----------------------------------------------------------------------------- rules


def compute_due_at(r: Referral, policy: ReferralPolicy | None = None) -> datetime | None:
    """When the referral is next overdue: the state's window, or the first-appointment target if earlier."""
    p = (policy or default_referral_policy()).levels[r.level]
    if r.state not in p.windows:
        return None
    base = r.appointment_at if r.state == S.SCHEDULED and r.appointment_at is not None else r.state_entered_at
    due = base + p.windows[r.state]
    if (r.state in BEFORE_FIRST_VISIT and not r.attended_once and not r.first_appointment_escalated
            and r.requested_at is not None):
        due = min(due, r.requested_at + p.first_appointment)
    return due


def _missed_kind(r: Referral, policy: ReferralPolicy) -> str:
    p = policy.levels[r.level]
    if (r.state in BEFORE_FIRST_VISIT and not r.attended_once and not r.first_appointment_escalated
            and r.requested_at is not None and r.due_at == r.requested_at + p.first_appointment):
        return "first_appointment"
    return r.state.value


def new_referral(level: Level, institution_id: InstitutionRef, actor_role: Role, now: datetime
                 ) -> tuple[Referral, ReferralEvent]:
    """A draft referral by the counsellor (drafts have no deadline until submitted)."""
    if actor_role != C:
        raise Forbidden(N_("%(role)s may not create a referral"), params={"role": actor_role.value})
    r = Referral(S.DRAFT, Level(level), institution_id, now, now)
    return r, ReferralEvent("referral:drafted", now, actor_role, None, S.DRAFT, r.tier, r.tier, institution_id)


def check(r: Referral, action: ReferralAction | str, actor_role: Role) -> ReferralTransition:
    """The table row allowing ``actor_role`` to do ``action`` now; InvalidTransition / Forbidden otherwise."""
    try:
        action = ReferralAction(action)
    except ValueError:
        raise InvalidTransition(f"unknown referral action {action!r}") from None
    if r.state == S.CLOSED:
        raise InvalidTransition(N_("the referral is closed"))
    t = TRANSITION_BY.get((action, r.state))
    if t is None:
        raise InvalidTransition(N_("cannot %(action)s a referral that is %(state)s"),
                                params={"action": action.value, "state": r.state.value})
    if actor_role not in t.roles:
        raise Forbidden(N_("%(role)s may not %(action)s a referral"),
                        params={"role": actor_role.value, "action": action.value})
    return t


def allowed_actions(r: Referral, actor_role: Role) -> list[ReferralAction]:
    """Actions ``actor_role`` may take on the referral now."""
    out = []
    for a in ReferralAction:
        try:
            check(r, a, actor_role)
        except (InvalidTransition, Forbidden):
            continue
        out.append(a)
    return out


def _invalid(field_: str, message: str, params: dict[str, Any] | None = None) -> ValidationFailed:
    return ValidationFailed(message, [{"field": field_, "error": message % params if params else message}],
                            params=params)


def apply(r: Referral, action: ReferralAction | str, actor_role: Role, now: datetime, *,
          reason: str | None = None, institution_id: InstitutionRef | None = None,
          appointment_at: datetime | None = None, consent: ConsentBasis | str | None = None,
          decline_code: str | None = None, diagnosis_category: str | None = None,
          policy: ReferralPolicy | None = None) -> tuple[Referral, ReferralEvent]:
    """Perform one action; refuses anything not in TRANSITIONS and any missing reason, consent or detail."""
    p = policy or default_referral_policy()
    t = check(r, action, actor_role)
    reason = reason.strip() if reason and reason.strip() else None
    if t.needs_reason and reason is None:
        raise _invalid("reason", N_("a reason is required"))
    changes: dict[str, Any] = {}
    detail: dict[str, Any] = {}
    if t.action == A.SUBMIT:
        try:
            basis = ConsentBasis(consent) if consent is not None else None
        except ValueError:
            basis = None
        if basis is None:
            raise _invalid("consent", N_("guardian consent, or an override, is required"))
        if basis == ConsentBasis.OVERRIDE:
            if r.level not in p.override_levels:
                raise _invalid("consent", N_("a consent override is allowed only for %(levels)s risk"),
                               {"levels": str(sorted(p.override_levels))})
            if reason is None:
                raise _invalid("reason", N_("a consent override needs a reason (it is audited)"))
        changes.update(consent_basis=basis, requested_at=now)
        detail["consent_basis"] = basis.value
    elif t.action == A.DECLINE:
        if decline_code not in p.decline_codes:
            raise _invalid("decline_code", N_("one of %(codes)s"), {"codes": str(sorted(p.decline_codes))})
        if decline_code == "other" and reason is None:
            raise _invalid("reason", N_("'other' needs a reason"))
        changes["decline_code"] = decline_code
        detail["decline_code"] = decline_code
    elif t.action == A.REROUTE:
        if institution_id is None or institution_id == r.institution_id:
            raise _invalid("institution_id", N_("re-route needs another institution"))
        changes.update(institution_id=institution_id, decline_code=None, appointment_at=None)
        detail["from_institution"] = str(r.institution_id)
    elif t.action in (A.SCHEDULE, A.RESCHEDULE):
        if appointment_at is None:
            raise _invalid("appointment_at", N_("an appointment time is required"))
        if r.requested_at is not None and appointment_at < r.requested_at:
            raise _invalid("appointment_at", N_("the appointment cannot be before the request"))
        changes["appointment_at"] = appointment_at
        detail["appointment_at"] = appointment_at.isoformat()
    elif t.action == A.RECORD_ATTENDED:
        changes["attended_once"] = True
    elif t.action == A.RECORD_FEEDBACK:
        if not diagnosis_category:
            raise _invalid("diagnosis_category", N_("feedback needs a diagnosis category code"))
        changes["diagnosis_category"] = diagnosis_category
        detail["diagnosis_category"] = diagnosis_category
    for name, value in (("institution_id", institution_id), ("appointment_at", appointment_at),
                        ("decline_code", decline_code), ("diagnosis_category", diagnosis_category)):
        if value is not None and name not in changes:
            raise _invalid(name, f"{t.action.value} does not take {name}")
    new = replace(r, state=t.target, state_entered_at=now, **changes)
    new = replace(new, due_at=compute_due_at(new, p))
    kind = "referral:consent_overridden" if detail.get("consent_basis") == "override" else f"referral:{t.action.value}"
    return new, ReferralEvent(kind, now, actor_role, r.state, new.state, r.tier, new.tier, new.institution_id,
                              reason, detail)


def due_referral_escalation(r: Referral, now: datetime, policy: ReferralPolicy | None = None, *,
                            escalation_policy: EscalationPolicy | None = None) -> ReferralEscalationStep | None:
    """The escalation due at ``now`` for a missed referral deadline, or None (closed and drafts never escalate)."""
    p = policy or default_referral_policy()
    if r.state in (S.CLOSED, S.DRAFT) or r.due_at is None or now < r.due_at:
        return None
    up = next_tier(r.tier)
    to = up if up is not None else r.tier
    roles = (escalation_policy or default_escalation_policy()).tier_roles
    inform = tuple(dict.fromkeys([roles[to], C]))
    return ReferralEscalationStep(_missed_kind(r, p), r.due_at, now, r.level, r.tier, to, inform)


def apply_referral_escalation(r: Referral, step: ReferralEscalationStep, policy: ReferralPolicy | None = None
                              ) -> tuple[Referral, ReferralEvent]:
    """Move the referral up one tier (or remind at the city); the new tier has ``chase_within`` to act."""
    p = policy or default_referral_policy()
    if r.state in (S.CLOSED, S.DRAFT) or step.from_tier != r.tier or r.due_at != step.due_at:
        raise InvalidTransition(N_("stale referral escalation step"))
    new = replace(r, tier=step.to_tier, escalations=r.escalations + 1, due_at=step.at + p.levels[r.level].chase_within,
                  first_appointment_escalated=r.first_appointment_escalated or step.missed == "first_appointment")
    kind = "referral:reminded" if step.is_reminder else "referral:escalated"
    return new, ReferralEvent(kind, step.at, None, r.state, r.state, r.tier, new.tier, r.institution_id,
                              None, {"missed": step.missed, "due_at": step.due_at.isoformat()})
