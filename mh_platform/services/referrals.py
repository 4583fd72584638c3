"""Green-channel referrals (心理危机转介绿色通道) to partner institutions, on the core transition table.

draft → requested (guardian consent, or an audited override with a reason for red risk)
→ accepted | declined (structured code; the counsellor re-routes to another institution)
→ scheduled → attended | no_show (re-schedule) → feedback → school_follow_up → closed.

Each transition is ONE transaction: the referral row changes under a conditional UPDATE on
``version`` (a concurrent change loses with Conflict), a ReferralEvent (free text sealed), an
``audit.record`` (ids and codes only) and the outbox notices (no names, no clinical detail).

Deadlines come from ``core/referral_policy.toml``; ``sweep(ctx, now)`` (job ``referral_sweep``)
escalates each missed deadline exactly once (claim = conditional UPDATE on ``version``): the
referral's tier goes school → county → city (then reminders at the city), the officers of the new
tier and the case counsellor are notified.

Who sees what (``access_referral_by_id``; NotFound for missing and out of reach alike):

* clinicians: only referrals addressed to their institution, never drafts; a minimum-necessary
  view of the student (pseudonym, age, sex, school name, level, referral reason);
* counsellors of the school holding the case: everything; the clinical feedback (diagnosis
  category, recommendations, return-to-school advice) only to the CASE counsellor;
* school leaders, county and city officers (pipeline): state, tier, deadlines — no text.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core import referrals as core
from mh_platform.core.errors import Conflict, Forbidden, InvalidTransition, NotFound, ValidationFailed
from mh_platform.core.i18n import N_
from mh_platform.core.types import Level, Role, Tier, UnitKind
from mh_platform.db.models import Case, Institution, OrgUnit, PlanItem, Referral, ReferralEvent, Student
from mh_platform.services import audit, disclosure, notify
from mh_platform.services import cases as case_service
from mh_platform.services.cases import (
    BREAK_GLASS,
    FULL,
    OFFICER_ROLES,
    SUMMARY,
    ancestor_id,
    notify_users,
    seal,
)
from mh_platform.services.context import SYSTEM, Actor, ServiceContext
from mh_platform.services.ids import id_or_404
from mh_platform.services.institutions import clinicians_of

CLINICIAN = "clinician"
DIAGNOSIS_CATEGORIES = ("none", "adjustment", "depressive_episode", "anxiety", "bipolar", "psychotic",
                        "trauma_stress", "neurodevelopmental", "eating", "substance", "other")
ACTIONS = tuple(a.value for a in core.ReferralAction)
# Actions whose outcome the case counsellor is told about; submit/reroute go to the institution.
TELL_SCHOOL = {"accept", "decline", "schedule", "reschedule", "record_attended", "record_no_show", "record_feedback"}
TELL_INSTITUTION = {"submit", "reroute", "cancel"}


def _uuid(value: uuid.UUID | str | None, what: str) -> uuid.UUID:
    return id_or_404(value, what)


# ----------------------------------------------------------------------------- mapping to the core


def to_core(r: Referral) -> core.Referral:
    return core.Referral(
        state=core.ReferralState(r.state), level=Level(r.level), institution_id=r.institution_id,
        state_entered_at=r.state_entered_at, created_at=r.created_at, tier=Tier(r.tier),
        requested_at=r.requested_at, appointment_at=r.appointment_at,
        consent_basis=core.ConsentBasis(r.consent_basis) if r.consent_basis else None,
        decline_code=r.decline_reason, attended_once=r.attended_once,
        first_appointment_escalated=r.first_appointment_escalated, due_at=r.due_at, escalations=r.escalations)


def _write_back(s: Session, row: Referral, new: core.Referral) -> None:
    """Conditional UPDATE on ``version``: exactly one writer wins; the loser gets Conflict."""
    values = dict(state=new.state.value, state_entered_at=new.state_entered_at, tier=new.tier.value,
                  requested_at=new.requested_at, appointment_at=new.appointment_at,
                  consent_basis=new.consent_basis.value if new.consent_basis else None,
                  decline_reason=new.decline_code, institution_id=new.institution_id,
                  attended_once=new.attended_once, first_appointment_escalated=new.first_appointment_escalated,
                  due_at=new.due_at, escalations=new.escalations, version=row.version + 1)
    if new.state == core.ReferralState.CLOSED:
        values["closed_at"] = new.state_entered_at
    res = s.execute(sa.update(Referral).where(Referral.id == row.id, Referral.version == row.version)
                    .values(**values).execution_options(synchronize_session=False))
    if case_service.rowcount(res) != 1:
        raise Conflict(N_("the referral changed meanwhile; reload and try again"))
    for k, v in values.items():
        setattr(row, k, v)
    s.flush()


# ----------------------------------------------------------------------------- access


def access_referral_by_id(s: Session, actor: Actor, referral_id: uuid.UUID | str, now: datetime
                          ) -> tuple[Referral, str]:
    """The referral and the actor's view (clinician / full / break_glass / summary); NotFound otherwise."""
    r = s.get(Referral, _uuid(referral_id, "referral"))
    if r is None:
        raise NotFound("referral not found")
    if actor.role == Role.CLINICIAN:
        if actor.institution_id is not None and r.institution_id == actor.institution_id and r.state != "draft":
            return r, CLINICIAN
        raise NotFound("referral not found")
    if actor.role in frozenset({Role.COUNSELLOR, Role.SCHOOL_LEADER}) | OFFICER_ROLES and case_service._in(actor, r.unit_path):
        if actor.role == Role.COUNSELLOR:
            return r, FULL
        if actor.role in OFFICER_ROLES and case_service.active_break_glass(s, actor, r.case_id, now) is not None:
            return r, BREAK_GLASS
        return r, SUMMARY
    raise NotFound("referral not found")


def sees_feedback(actor: Actor, view: str, case: Case | None) -> bool:
    """Clinical feedback: the institution's clinicians and the case counsellor, nobody else."""
    if view == CLINICIAN:
        return True
    return view == FULL and case is not None and case_service.is_case_counsellor(actor, case)


# ----------------------------------------------------------------------------- writing


def create_referral(ctx: ServiceContext, actor: Actor, case_id: uuid.UUID | str, *,
                    institution_id: uuid.UUID | str, reason: str) -> uuid.UUID:
    """A counsellor drafts a referral of a case to an active partner institution (reason sealed)."""
    reason = case_service._text(reason, "reason", required=True)
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        case = case_service.case_for_work(s, actor, case_id, now)
        if case.status != "open":
            raise InvalidTransition(N_("a case being handed over cannot be referred"))
        inst = _active_institution(s, institution_id, case)
        if s.scalar(sa.select(Referral.id).where(Referral.case_id == case.id, Referral.state != "closed").limit(1)):
            raise Conflict(N_("the case already has an open referral"))
        # claim the case (its version), as close_case and a handover do: a close, a handover or a second
        # draft that read the case meanwhile loses (Conflict), so a closed case never has an open referral
        case_service._bump(s, case)
        draft, ev = core.new_referral(Level(case.level), inst.id, case_service.role_of(actor), now)
        row = Referral(id=uuid.uuid4(), case_id=case.id, student_id=case.student_id, institution_id=inst.id,
                       school_unit_id=case.school_unit_id, unit_path=case.unit_path, level=case.level,
                       state=draft.state.value, tier=draft.tier.value, state_entered_at=now, due_at=None,
                       escalations=0, created_by=actor.user_id, created_at=now, version=1)
        seal(ctx, s, row, "reason_enc", reason, case.student_id, now)
        s.add(row)
        s.flush()
        s.add(ReferralEvent(referral_id=row.id, from_state=None, to_state=row.state, actor_user_id=actor.user_id,
                            institution_id=inst.id, detail={}, at=now, seq=row.version))
        audit.record(ctx, s, actor, ev.kind, "referral", row.id, {"case_id": case.id, "institution_id": inst.id,
                                                                 "level": case.level})
        uow.commit()
        return row.id


def _active_institution(s: Session, institution_id: uuid.UUID | str | None, case: Case) -> Institution:
    if institution_id in (None, ""):
        raise ValidationFailed(N_("choose an institution"), [{"field": "institution_id", "error": "required"}])
    try:
        iid = _uuid(institution_id, "institution")
    except NotFound:
        raise ValidationFailed(N_("unknown institution"), [{"field": "institution_id", "error": "unknown"}]) from None
    inst = s.get(Institution, iid)
    city_id = ancestor_id(case.unit_path, UnitKind.CITY)
    if inst is None or inst.city_unit_id != city_id:
        raise ValidationFailed(N_("unknown institution"), [{"field": "institution_id", "error": "unknown"}])
    if not inst.active:
        raise ValidationFailed(N_("the institution no longer takes referrals"),
                               [{"field": "institution_id", "error": "inactive"}])
    return inst


def transition(ctx: ServiceContext, actor: Actor, referral_id: uuid.UUID | str, action: str, *,
               reason: str | None = None, institution_id: uuid.UUID | str | None = None,
               appointment_at: datetime | None = None, consent: str | None = None,
               decline_code: str | None = None, diagnosis_category: str | None = None,
               recommendations: str | None = None, return_advice: str | None = None,
               reentry_items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Do one action of the core table on a referral; returns ``{"id", "state", "tier", "due_at"}``."""
    if action not in ACTIONS:
        raise InvalidTransition(f"unknown referral action {action!r}")
    reason = case_service._text(reason, "reason")
    if appointment_at is not None:
        case_service._aware(appointment_at, "appointment_at")
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        row, view = access_referral_by_id(s, actor, referral_id, now)
        if view not in (FULL, CLINICIAN):
            raise Forbidden(N_("your role may not change a referral"))
        case = s.get(Case, row.case_id)
        if case is None:
            raise NotFound("referral not found")
        if view == FULL and case.status == "transferring":
            raise InvalidTransition(N_("the case is being handed over; the receiving counsellor continues"))
        if action == "record_attended" and row.appointment_at is not None and now < row.appointment_at:
            raise ValidationFailed(N_("the visit cannot be recorded as attended before the appointment time"),
                                   [{"field": "appointment_at", "error": "appointment not reached yet"}])
        new_inst: Institution | None = None
        if action == "reroute":
            new_inst = _active_institution(s, institution_id, case)
        if action == "record_feedback":
            if diagnosis_category not in DIAGNOSIS_CATEGORIES:
                raise ValidationFailed(N_("choose a diagnosis category"),
                                       [{"field": "diagnosis_category", "error": f"one of {DIAGNOSIS_CATEGORIES}"}])
            recommendations = case_service._text(recommendations, "recommendations", required=True)
            return_advice = case_service._text(return_advice, "return_advice", required=True)
        elif diagnosis_category is not None or recommendations or return_advice:
            raise ValidationFailed(N_("feedback belongs to record_feedback"), [{"field": "diagnosis_category",
                                                                           "error": "not for this action"}])
        if reentry_items and action != "start_follow_up":
            raise ValidationFailed(N_("a re-entry plan starts with the school follow-up"),
                                   [{"field": "reentry_items", "error": "only with start_follow_up"}])
        before = to_core(row)
        new, ev = core.apply(before, action, case_service.role_of(actor), now, reason=reason,
                             institution_id=new_inst.id if new_inst else None, appointment_at=appointment_at,
                             consent=consent, decline_code=decline_code, diagnosis_category=diagnosis_category)
        old_institution = row.institution_id
        _write_back(s, row, new)
        detail = {k: v for k, v in ev.detail.items() if k != "diagnosis_category"}
        event = ReferralEvent(id=uuid.uuid4(), referral_id=row.id, from_state=before.state.value,
                              to_state=new.state.value, actor_user_id=actor.user_id,
                              institution_id=new.institution_id if action == "reroute" else old_institution,
                              detail=detail, at=now, seq=row.version)
        seal(ctx, s, event, "note_enc", ev.reason if action not in ("submit",) else None, row.student_id, now)
        s.add(event)
        if action == "submit":
            case_service.advance_flag(ctx, s, actor, case.flag_id, "refer", now)
        if action == "submit" and new.consent_basis == core.ConsentBasis.OVERRIDE:
            seal(ctx, s, row, "override_reason_enc", ev.reason, row.student_id, now)
        if action == "record_feedback":
            seal(ctx, s, row, "feedback_enc", recommendations, row.student_id, now)
            seal(ctx, s, row, "return_advice_enc", return_advice, row.student_id, now)
            seal(ctx, s, row, "diagnosis_enc", diagnosis_category, row.student_id, now)
        reentry_ids = []
        if action == "start_follow_up":
            for i, item in enumerate(reentry_items or []):
                reentry_ids.append(_add_reentry_item(ctx, s, actor, case, item, i, now))
        audit_data: dict[str, Any] = {"from": before.state.value, "to": new.state.value, "tier": new.tier.value,
                                      "institution_id": new.institution_id}
        for key in ("decline_code", "consent_basis", "from_institution"):
            if key in detail:
                audit_data[key] = detail[key]
        if reentry_ids:
            audit_data["reentry_items"] = len(reentry_ids)
        audit.record(ctx, s, actor, ev.kind, "referral", row.id, audit_data)
        ids = _transition_notices(s, row, case, action, old_institution, before.state.value, now)
        uow.after_commit(lambda: notify.send_soon(ctx, ids))
        uow.commit()
        return {"id": str(row.id), "state": row.state, "tier": row.tier,
                "due_at": row.due_at.isoformat() if row.due_at else None}


def _add_reentry_item(ctx: ServiceContext, s: Session, actor: Actor, case: Case, item: dict[str, Any], i: int,
                      now: datetime) -> uuid.UUID:
    goal = case_service._text(item.get("goal"), f"reentry_items[{i}].goal", required=True)
    act = case_service._text(item.get("action"), f"reentry_items[{i}].action", required=True)
    review_at = item.get("review_at")
    if isinstance(review_at, str):
        try:
            review_at = datetime.fromisoformat(review_at)
        except ValueError:
            review_at = None
    review_at = case_service._aware(review_at, f"reentry_items[{i}].review_at")
    case_service.not_past(review_at, now, f"reentry_items[{i}].review_at")
    owner = case_service._check_owner(s, case, item.get("owner_user_id")) or actor.user_id
    p = PlanItem(id=uuid.uuid4(), case_id=case.id, kind="reentry", owner_user_id=owner, review_at=review_at,
                 status="active", created_at=now)
    seal(ctx, s, p, "goal_enc", goal, case.student_id, now)
    seal(ctx, s, p, "action_enc", act, case.student_id, now)
    s.add(p)
    return p.id


def _transition_notices(s: Session, row: Referral, case: Case, action: str, old_institution: uuid.UUID,
                        before_state: str, now: datetime) -> list[uuid.UUID]:
    school = s.get(OrgUnit, row.school_unit_id)
    unit_name = school.name if school else ""
    dedupe = f"referral:{row.id}:v{row.version}"
    ids: list[uuid.UUID] = []
    if action in ("submit", "reroute"):
        ids += notify_users(s, clinicians_of(s, row.institution_id), template="referral_received", unit_name=unit_name,
                            link=f"/referrals/{row.id}", dedupe=dedupe, now=now)
    if (action == "cancel" and before_state != "draft") or (action == "reroute" and before_state == "requested"):
        ids += notify_users(s, clinicians_of(s, old_institution), template="referral_updated", unit_name=unit_name,
                            link="/referrals", dedupe=dedupe, now=now)
    if action in TELL_SCHOOL:
        ids += notify_users(s, case_service.case_counsellors(s, case), template="referral_updated",
                            unit_name=unit_name, link=f"/cases/{case.id}", dedupe=dedupe, now=now)
    return ids


# ----------------------------------------------------------------------------- reading


def _events(ctx: ServiceContext, s: Session, actor: Actor, r: Referral, view: str, purpose: str
            ) -> list[dict[str, Any]]:
    rows = s.scalars(sa.select(ReferralEvent).where(ReferralEvent.referral_id == r.id)
                     .order_by(ReferralEvent.seq)).all()
    out = []
    for e in rows:
        if view == CLINICIAN and e.institution_id != actor.institution_id:
            continue  # another institution's part of the history is not this one's business
        note = None
        if view in (FULL, CLINICIAN) and e.note_enc is not None:
            note = disclosure.reveal(ctx, s, actor, e, "note_enc", student_id=r.student_id, purpose=purpose)
        out.append({"at": e.at.isoformat(), "from_state": e.from_state, "to_state": e.to_state,
                    "detail": {k: v for k, v in (e.detail or {}).items() if k != "from_institution"}
                    if view == CLINICIAN else (e.detail or {}), "note": note})
    return out


def _summary(r: Referral, inst: Institution | None, school: OrgUnit | None, pseudonym: str, now: datetime,
             actor: Actor, view: str) -> dict[str, Any]:
    c = to_core(r)
    return {"id": str(r.id), "case_id": str(r.case_id) if view != CLINICIAN else None, "state": r.state,
            "tier": r.tier, "level": r.level, "institution_id": str(r.institution_id),
            "institution_name": inst.name if inst else "", "school_name": school.name if school else "",
            "pseudonym": pseudonym, "consent_basis": r.consent_basis, "decline_code": r.decline_reason,
            "appointment_at": r.appointment_at.isoformat() if r.appointment_at else None,
            "requested_at": r.requested_at.isoformat() if r.requested_at else None,
            "due_at": r.due_at.isoformat() if r.due_at else None,
            "overdue": r.due_at is not None and r.due_at <= now, "escalations": r.escalations,
            "created_at": r.created_at.isoformat(),
            "actions": [a.value for a in core.allowed_actions(c, case_service.role_of(actor))]
            if view in (FULL, CLINICIAN) else []}


def referral_detail(ctx: ServiceContext, actor: Actor, referral_id: uuid.UUID | str) -> dict[str, Any]:
    """One referral as the actor may see it; decryptions logged with a purpose."""
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        r, view = access_referral_by_id(s, actor, referral_id, now)
        case = s.get(Case, r.case_id)
        out = _detail(ctx, s, actor, r, view, case, now)
        uow.commit()
        return out


def _detail(ctx: ServiceContext, s: Session, actor: Actor, r: Referral, view: str, case: Case | None,
            now: datetime, *, history_text: bool = True) -> dict[str, Any]:
    """``history_text`` False (the case page): the override reason and event notes, which that page
    does not show, stay sealed — nothing is decrypted that is not displayed."""
    inst = s.get(Institution, r.institution_id)
    school = s.get(OrgUnit, r.school_unit_id)
    student = s.get(Student, r.student_id)
    out = _summary(r, inst, school, student.pseudonym if student else "", now, actor, view)
    purpose = {CLINICIAN: "referral_clinical", FULL: "referral_work", BREAK_GLASS: "break_glass"}.get(view)
    out["view"] = view
    if view == CLINICIAN:
        out["student"] = case_service.student_overview(s, r.student_id, now)
        out["student"]["school_name"] = school.name if school else out["student"]["school_name"]
    text = view in (FULL, CLINICIAN, BREAK_GLASS)
    out["reason"] = (disclosure.reveal(ctx, s, actor, r, "reason_enc", student_id=r.student_id, purpose=purpose)
                     if text else None)
    out["override_reason"] = (disclosure.reveal(ctx, s, actor, r, "override_reason_enc", student_id=r.student_id,
                                                purpose=purpose) if view in (FULL, CLINICIAN) and history_text else None)
    fb = sees_feedback(actor, view, case)
    out["feedback_visible"] = fb
    fpurpose = "clinical_feedback"
    out["feedback"] = {
        "diagnosis_category": disclosure.reveal(ctx, s, actor, r, "diagnosis_enc", student_id=r.student_id,
                                                purpose=fpurpose),
        "recommendations": disclosure.reveal(ctx, s, actor, r, "feedback_enc", student_id=r.student_id,
                                             purpose=fpurpose),
        "return_advice": disclosure.reveal(ctx, s, actor, r, "return_advice_enc", student_id=r.student_id,
                                           purpose=fpurpose),
    } if fb and r.feedback_enc is not None else None
    out["events"] = _events(ctx, s, actor, r, view, purpose or "referral_oversight") if (
        view != SUMMARY and history_text) else [
        {"at": e.at.isoformat(), "from_state": e.from_state, "to_state": e.to_state, "detail": {}, "note": None}
        for e in s.scalars(sa.select(ReferralEvent).where(ReferralEvent.referral_id == r.id)
                           .order_by(ReferralEvent.seq))]
    return out


def referrals_of_case(ctx: ServiceContext, s: Session, actor: Actor, case: Case, view: str, now: datetime
                      ) -> list[dict[str, Any]]:
    """The referrals of a case, for the case page (same rules as ``referral_detail``)."""
    rows = s.scalars(sa.select(Referral).where(Referral.case_id == case.id).order_by(Referral.created_at)).all()
    return [_detail(ctx, s, actor, r, view, case, now, history_text=False) for r in rows]


def list_referrals(ctx: ServiceContext, actor: Actor, *, state: str | None = None, overdue: bool = False,
                   limit: int = 200) -> list[dict[str, Any]]:
    """Referrals the actor reaches, no decrypted text: a clinician's inbox (their institution only),
    a counsellor's or leader's school, an officer's pipeline (their subtree)."""
    if state is not None and state not in {s.value for s in core.ReferralState}:
        raise ValidationFailed(N_("unknown state"), [{"field": "state", "error": "unknown referral state"}])
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        q = (sa.select(Referral, Institution, OrgUnit, Student.pseudonym)
             .join(Institution, Institution.id == Referral.institution_id)
             .join(OrgUnit, OrgUnit.id == Referral.school_unit_id).join(Student, Student.id == Referral.student_id))
        if actor.role == Role.CLINICIAN and actor.institution_id is not None:
            q = q.where(Referral.institution_id == actor.institution_id, Referral.state != "draft")
            view = CLINICIAN
        elif actor.role in frozenset({Role.COUNSELLOR, Role.SCHOOL_LEADER}) | OFFICER_ROLES and actor.unit_path:
            q = q.where(case_service.scoped(Referral.unit_path, actor.unit_path))
            view = FULL if actor.role == Role.COUNSELLOR else SUMMARY
            if actor.role in OFFICER_ROLES:
                q = q.where(Referral.state != "draft")
        else:
            return []
        if state is not None:
            q = q.where(Referral.state == state)
        if overdue:
            q = q.where(Referral.due_at <= now)
        rows = s.execute(q.order_by(Referral.state == "closed", Referral.due_at.is_(None), Referral.due_at,
                                    Referral.created_at.desc()).limit(limit)).all()
        return [_summary(r, inst, school, ps, now, actor, view) for r, inst, school, ps in rows]


# ----------------------------------------------------------------------------- deadline sweep


def sweep(ctx: ServiceContext, now: datetime | None = None, *, limit: int = 500) -> dict[str, Any]:
    """Escalate every referral whose deadline passed, exactly once per missed deadline.

    Candidates are read without locks; each is then claimed with ``UPDATE … WHERE id AND version``
    inside its own transaction together with its event, audit record and notices — a second sweeper
    (another process, or a re-run after a crash) loses the claim and does nothing.
    """
    now = now or ctx.now()
    with ctx.uow() as uow:
        cand = uow.session.execute(
            sa.select(Referral.id).where(Referral.state.notin_(("draft", "closed")), Referral.due_at <= now)
            .order_by(Referral.due_at).limit(limit)).scalars().all()
    out: dict[str, Any] = {"checked": len(cand), "escalated": []}
    for rid in cand:
        step = _escalate_one(ctx, rid, now)
        if step is not None:
            out["escalated"].append(step)
    return out


def _escalate_one(ctx: ServiceContext, rid: uuid.UUID, now: datetime) -> dict[str, Any] | None:
    ids: list[uuid.UUID] = []
    with ctx.uow() as uow:
        s = uow.session
        row = s.get(Referral, rid)
        if row is None:
            return None
        before = to_core(row)
        step = core.due_referral_escalation(before, now)
        if step is None:
            return None
        new, ev = core.apply_referral_escalation(before, step)
        try:
            _write_back(s, row, new)
        except Conflict:
            return None  # someone else claimed it
        s.add(ReferralEvent(referral_id=row.id, from_state=row.state, to_state=row.state, actor_user_id=None,
                            institution_id=row.institution_id,
                            detail={"kind": ev.kind, "missed": step.missed, "from_tier": step.from_tier.value,
                                    "to_tier": step.to_tier.value, "due_at": step.due_at.isoformat()}, at=now,
                            seq=row.version))
        audit.record(ctx, s, SYSTEM, ev.kind, "referral", row.id,
                     {"missed": step.missed, "from_tier": step.from_tier.value, "to_tier": step.to_tier.value,
                      "escalations": new.escalations})
        school = s.get(OrgUnit, row.school_unit_id)
        unit_name = school.name if school else ""
        dedupe = f"referral:{row.id}:esc{new.escalations}"
        target_kind = UnitKind.COUNTY if step.to_tier == Tier.COUNTY else UnitKind.CITY
        role = Role.COUNTY_OFFICER if step.to_tier == Tier.COUNTY else Role.CITY_OFFICER
        unit_id = ancestor_id(row.unit_path, target_kind)
        if unit_id is not None and step.to_tier in (Tier.COUNTY, Tier.CITY):
            ids += notify_users(s, case_service.users_at(s, role, unit_id), template="referral_overdue",
                                unit_name=unit_name, link=f"/referrals/{row.id}", dedupe=dedupe, now=now)
        case = s.get(Case, row.case_id)
        if case is not None:
            ids += notify_users(s, case_service.case_counsellors(s, case), template="referral_updated",
                                unit_name=unit_name, link=f"/cases/{case.id}", dedupe=dedupe, now=now)
        uow.after_commit(lambda: notify.send_soon(ctx, ids))
        uow.commit()
        return {"referral": str(row.id), "missed": step.missed, "from_tier": step.from_tier.value,
                "to_tier": step.to_tier.value}


def sweep_job(ctx: ServiceContext) -> dict[str, Any]:
    """Scheduler entry point (job ``referral_sweep``)."""
    res = sweep(ctx, ctx.now())
    return {"checked": res["checked"], "escalated": len(res["escalated"])}
