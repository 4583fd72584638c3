"""Cases (一生一策): opened from a confirmed flag; support plan, follow-ups, guardian contacts.

Access (``access_case_by_id``) answers NotFound for a missing case and for one outside the caller's
reach alike:

* a counsellor of the school that holds the case: everything (``full``);
* the school leader of that school: a summary without clinical text (``summary``);
* a county or city officer: only through an active break-glass grant on a case under their unit
  (``break_glass``: case text, but never the clinical feedback of a referral);
* everybody else (head teachers, monitors, clinicians, administrators): nothing.

Every free text (case summary, plan goals and actions, follow-up notes, guardian-contact notes) is
sealed under the student's data key and opened only through ``services.disclosure`` with a purpose,
which writes the access log. Audit events carry ids and codes only.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, overload

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core.errors import Conflict, Forbidden, InvalidTransition, NotFound, ValidationFailed
from mh_platform.core.i18n import N_
from mh_platform.core.types import Role, UnitKind
from mh_platform.db.models import (
    BreakGlass,
    Case,
    Enrolment,
    Flag,
    FollowUp,
    GuardianContact,
    OrgUnit,
    PlanItem,
    Referral,
    RoleAssignment,
    Student,
    Transfer,
    User,
)
from mh_platform.services import audit, disclosure, notify
from mh_platform.services.context import Actor, ServiceContext
from mh_platform.services.ids import id_or_404
from mh_platform.services.org import under

# Flag statuses that mean "confirmed by interview" (访谈复核) — a case may be opened from them.
CONFIRMED_FLAG_STATUSES = frozenset({"assessed", "intervention", "referral", "monitoring"})
CASE_STATUSES = ("open", "transferring", "closed")
PLAN_KINDS = ("support", "reentry")
PLAN_STATUSES = ("active", "done", "dropped")
CONTACT_METHODS = ("phone", "in_person", "home_visit", "message", "meeting")
OFFICER_ROLES = frozenset({Role.COUNTY_OFFICER, Role.CITY_OFFICER})
MAX_TEXT = 4000

FULL, SUMMARY, BREAK_GLASS = "full", "summary", "break_glass"




def notify_users(s: Session, users: list[User], *, template: str, unit_name: str, link: str, dedupe: str,
                 now: datetime) -> list[uuid.UUID]:
    """Queue the notice (inbox, and email when the user has an address) for each user, deduplicated."""
    params = {"unit": unit_name, "link": link}
    ids = []
    for user in users:
        for channel, address in (("inbox", None), ("email", user.email)):
            if channel == "email" and not address:
                continue
            oid = notify.enqueue(s, channel=channel, template=template, params=params,
                                 dedupe_key=f"{dedupe}:{user.id}:{channel}", now=now, recipient_user_id=user.id,
                                 address=address)
            if oid is not None:
                ids.append(oid)
    return ids


def users_at(s: Session, role: Role, unit_id: uuid.UUID) -> list[User]:
    return notify.users_with_role(s, role, unit_id)


def case_counsellors(s: Session, case: Case) -> list[User]:
    """Who is told of news on a case (a referral answered or overdue, a break-glass use): its counsellor
    while they are active and still a counsellor of the case's school; else every active counsellor
    there, so the news reaches someone who can open the case (a counsellor who left, or moved to
    another school, would be told of a case they no longer reach, or not at all)."""
    at_school = users_at(s, Role.COUNSELLOR, case.school_unit_id)
    return [u for u in at_school if u.id == case.counsellor_user_id] or at_school


def ancestor_id(path: str, kind: UnitKind) -> uuid.UUID | None:
    """The id of the ancestor of ``kind`` from a materialised path (city=0, county=1, school=2…)."""
    parts = path.strip("/").split("/")
    depth = list(UnitKind).index(kind)
    return uuid.UUID(parts[depth]) if depth < len(parts) else None


# ----------------------------------------------------------------------------- helpers


@overload
def _text(value: str | None, field: str, *, required: Literal[True]) -> str: ...
@overload
def _text(value: str | None, field: str, *, required: bool = False) -> str | None: ...
def _text(value: str | None, field: str, *, required: bool = False) -> str | None:
    if value is None or not str(value).strip():
        if required:
            raise ValidationFailed(N_("%(field)s is required"), [{"field": field, "error": "required"}],
                                   params={"field": field})
        return None
    value = str(value).strip()
    if len(value) > MAX_TEXT:
        raise ValidationFailed(N_("%(field)s is too long"), [{"field": field, "error": f"at most {MAX_TEXT} characters"}],
                               params={"field": field})
    return value


@overload
def _aware(value: datetime | None, field: str) -> datetime: ...
@overload
def _aware(value: datetime | None, field: str, *, required: bool) -> datetime | None: ...
def _aware(value: datetime | None, field: str, *, required: bool = True) -> datetime | None:
    if value is None:
        if required:
            raise ValidationFailed(N_("%(field)s is required"), [{"field": field, "error": "required"}],
                                   params={"field": field})
        return None
    if value.tzinfo is None:
        raise ValidationFailed(N_("%(field)s needs a time zone"), [{"field": field, "error": "timezone required"}],
                               params={"field": field})
    return value


def not_past(value: datetime | None, now: datetime, field: str) -> None:
    """A plan's review date lies ahead: one already past is refused (nothing is written)."""
    if value is not None and value < now:
        raise ValidationFailed(N_("%(field)s must not be in the past"),
                               [{"field": field, "error": "must not be in the past"}], params={"field": field})


def rowcount(result: Any) -> int:
    """Rows matched by an UPDATE (a CursorResult's rowcount)."""
    return int(result.rowcount)


def scoped(column: Any, path: str) -> sa.ColumnElement[bool]:
    """``services.org.under`` for a mapped attribute."""
    return under(column, path)


def role_of(actor: Actor) -> Role:
    if actor.role is None:
        raise Forbidden(N_("a person's role is needed"))
    return Role(actor.role)


def seal(ctx: ServiceContext, s: Session, obj: Any, column: str, value: str | None, student_id: uuid.UUID,
         now: datetime) -> None:
    """Seal ``value`` into ``obj.<column>`` (the row id must be set first)."""
    setattr(obj, column, ctx.keyring.seal(s, table=obj.__tablename__, column=column, row_id=obj.id, value=value,
                                          student_id=student_id, now=now))


def _bump(s: Session, case: Case) -> None:
    """Optimistic concurrency: a case changes only if nobody changed it since we read it."""
    res = s.execute(sa.update(Case).where(Case.id == case.id, Case.version == case.version)
                    .values(version=case.version + 1).execution_options(synchronize_session=False))
    if rowcount(res) != 1:
        raise Conflict(N_("the case changed meanwhile; reload and try again"))
    case.version += 1


def active_break_glass(s: Session, actor: Actor, case_id: uuid.UUID, now: datetime) -> BreakGlass | None:
    if actor.user_id is None:
        return None
    return s.scalar(sa.select(BreakGlass).where(BreakGlass.user_id == actor.user_id, BreakGlass.case_id == case_id,
                                                BreakGlass.opened_at <= now, BreakGlass.expires_at > now)
                    .order_by(BreakGlass.expires_at.desc()).limit(1))


def access_case_by_id(s: Session, actor: Actor, case_id: uuid.UUID | str, now: datetime) -> tuple[Case, str]:
    """The case and the view the actor gets (full / summary / break_glass); NotFound otherwise."""
    cid = id_or_404(case_id, "case")
    case = s.get(Case, cid)
    if case is None:
        raise NotFound("case not found")
    if actor.role == Role.COUNSELLOR and _in(actor, case.unit_path):
        return case, FULL
    if actor.role == Role.SCHOOL_LEADER and _in(actor, case.unit_path):
        return case, SUMMARY
    if (actor.role in OFFICER_ROLES and _in(actor, case.unit_path)
            and active_break_glass(s, actor, case.id, now) is not None):
        return case, BREAK_GLASS
    raise NotFound("case not found")


def _in(actor: Actor, path: str | None) -> bool:
    return bool(actor.unit_path and path and path.startswith(actor.unit_path))


def case_for_work(s: Session, actor: Actor, case_id: uuid.UUID | str, now: datetime, *,
                  open_only: bool = True) -> Case:
    """A case the actor may change: counsellors of the holding school only."""
    case, view = access_case_by_id(s, actor, case_id, now)
    if view != FULL:
        raise Forbidden(N_("only the school's counsellor may change a case"))
    if open_only and case.status == "closed":
        raise InvalidTransition(N_("the case is closed"))
    student = s.get(Student, case.student_id)
    if student is None or student.erased_at is not None:
        raise InvalidTransition(N_("the student's data was erased; the case is kept as history only"))
    return case


def is_case_counsellor(actor: Actor, case: Case) -> bool:
    return actor.role == Role.COUNSELLOR and actor.user_id is not None and case.counsellor_user_id == actor.user_id


def _school(s: Session, unit_id: uuid.UUID) -> OrgUnit:
    unit = s.get(OrgUnit, unit_id)
    if unit is None:
        raise NotFound("unit not found")
    return unit


def _check_owner(s: Session, case: Case, owner_user_id: uuid.UUID | str | None) -> uuid.UUID | None:
    """A task owner must be an active user working at the case's school (counsellor, teacher, leader)."""
    if owner_user_id in (None, ""):
        return None
    try:
        oid = owner_user_id if isinstance(owner_user_id, uuid.UUID) else uuid.UUID(str(owner_user_id))
    except ValueError:
        raise ValidationFailed(N_("unknown owner"), [{"field": "owner_user_id", "error": "unknown user"}]) from None
    row = s.execute(sa.select(User.id, OrgUnit.path).join(RoleAssignment, RoleAssignment.user_id == User.id)
                    .join(OrgUnit, OrgUnit.id == RoleAssignment.unit_id)
                    .where(User.id == oid, User.is_active.is_(True))).all()
    if not any(p.startswith(case.unit_path) for _, p in row):
        raise ValidationFailed(N_("the owner must work at the case's school"),
                               [{"field": "owner_user_id", "error": "not at this school"}])
    return oid


def advance_flag(ctx: ServiceContext, s: Session, actor: Actor, flag_id: uuid.UUID | None, action: str,
                 now: datetime) -> None:
    """Keep the flag's lifecycle in step with the case work, in the caller's transaction: opening a case
    starts the intervention, submitting a referral marks the flag ``referral``. Skipped when the flag is
    already further along (the flag table refuses the step); audit lock taken first, as the flags service does."""
    if flag_id is None:
        return
    from mh_platform.core import flag_lifecycle as fl
    from mh_platform.services import flags as flag_service
    from mh_platform.services.flags_access import escalation_policy

    flag = s.get(Flag, flag_id)
    if flag is None or flag.status == "closed":
        return
    flag_service.lock_audit(s)
    s.refresh(flag)
    try:
        new, ev = fl.apply(flag_service.to_state(flag), action, role_of(actor), None, now,
                           policy=escalation_policy(ctx))
    except (InvalidTransition, Forbidden, ValidationFailed):
        return
    if not flag_service.claim_update(s, flag, flag_service.state_values(new)):
        raise Conflict(N_("the flag changed meanwhile; reload and try again"))
    flag_service.add_event(ctx, s, flag, ev, actor)


# ----------------------------------------------------------------------------- opening and closing


def open_case(ctx: ServiceContext, actor: Actor, flag_id: uuid.UUID | str, *, summary: str | None = None) -> uuid.UUID:
    """A counsellor opens a case from a confirmed flag of their school. Red: the school leader is told."""
    if actor.role != Role.COUNSELLOR:
        raise Forbidden(N_("only a counsellor opens a case"))
    summary = _text(summary, "summary")
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        fid = id_or_404(flag_id, "flag")
        flag = s.get(Flag, fid)
        if flag is None or not _in(actor, flag.unit_path):
            raise NotFound("flag not found")
        if flag.status not in CONFIRMED_FLAG_STATUSES:
            raise InvalidTransition(N_("a case is opened from a flag confirmed by interview (assessed)"))
        if s.scalar(sa.select(Case.id).where(Case.student_id == flag.student_id, Case.status != "closed")):
            raise Conflict(N_("the student already has an open case"))
        school = _school(s, flag.school_unit_id)
        case = Case(id=uuid.uuid4(), student_id=flag.student_id, flag_id=flag.id, school_unit_id=school.id,
                    unit_path=school.path, counsellor_user_id=actor.user_id, level=flag.level, status="open",
                    opened_at=now, version=1)
        seal(ctx, s, case, "summary_enc", summary, flag.student_id, now)
        s.add(case)
        s.flush()
        ids: list[uuid.UUID] = []
        if flag.level == "red":
            ids = notify_users(s, users_at(s, Role.SCHOOL_LEADER, school.id), template="case_red_opened",
                               unit_name=school.name, link=f"/cases/{case.id}", dedupe=f"case:{case.id}:red", now=now)
            case.leader_informed_at = now
        advance_flag(ctx, s, actor, flag.id, "start_intervention", now)
        audit.record(ctx, s, actor, "case:opened", "case_file", case.id,
                     {"flag_id": flag.id, "level": flag.level, "school_id": school.id,
                      "leader_informed": flag.level == "red"})
        uow.after_commit(lambda: notify.send_soon(ctx, ids))
        uow.commit()
        return case.id


def close_case(ctx: ServiceContext, actor: Actor, case_id: uuid.UUID | str, *, reason: str) -> None:
    """Close a case (reason sealed); refused while a referral of it is still open."""
    reason = _text(reason, "reason", required=True)
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        case = case_for_work(s, actor, case_id, now)
        if case.status == "transferring":
            raise InvalidTransition(N_("finish or cancel the handover first"))
        if s.scalar(sa.select(Referral.id).where(Referral.case_id == case.id, Referral.state != "closed").limit(1)):
            raise InvalidTransition(N_("close or cancel the case's open referrals first"))
        _bump(s, case)
        case.status, case.closed_at, case.closed_by = "closed", now, actor.user_id
        seal(ctx, s, case, "close_reason_enc", reason, case.student_id, now)
        s.execute(sa.update(PlanItem).where(PlanItem.case_id == case.id, PlanItem.status == "active")
                  .values(status="done"))
        audit.record(ctx, s, actor, "case:closed", "case_file", case.id, {})
        uow.commit()


# ----------------------------------------------------------------------------- plan, follow-ups, contacts


def add_plan_item(ctx: ServiceContext, actor: Actor, case_id: uuid.UUID | str, *, goal: str, action: str,
                  review_at: datetime, owner_user_id: uuid.UUID | str | None = None, kind: str = "support"
                  ) -> uuid.UUID:
    """One line of the support plan (一生一策) — or of the school re-entry plan (kind ``reentry``)."""
    goal = _text(goal, "goal", required=True)
    action = _text(action, "action", required=True)
    review_at = _aware(review_at, "review_at")
    if kind not in PLAN_KINDS:
        raise ValidationFailed(N_("unknown plan kind"), [{"field": "kind", "error": f"one of {PLAN_KINDS}"}])
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        case = case_for_work(s, actor, case_id, now)
        not_past(review_at, now, "review_at")
        owner = _check_owner(s, case, owner_user_id) or actor.user_id
        item = PlanItem(id=uuid.uuid4(), case_id=case.id, kind=kind, owner_user_id=owner, review_at=review_at,
                        status="active", created_at=now)
        seal(ctx, s, item, "goal_enc", goal, case.student_id, now)
        seal(ctx, s, item, "action_enc", action, case.student_id, now)
        s.add(item)
        _bump(s, case)
        audit.record(ctx, s, actor, "case:plan_item_added", "plan_item", item.id,
                     {"case_id": case.id, "kind": kind, "owner_id": owner})
        uow.commit()
        return item.id


def update_plan_item(ctx: ServiceContext, actor: Actor, item_id: uuid.UUID | str, *, status: str | None = None,
                     review_at: datetime | None = None) -> None:
    """Mark a plan line done/dropped, or set its next review date."""
    if status is not None and status not in PLAN_STATUSES:
        raise ValidationFailed(N_("unknown status"), [{"field": "status", "error": f"one of {PLAN_STATUSES}"}])
    review_at = _aware(review_at, "review_at", required=False)
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        item = _child(s, PlanItem, item_id)
        case = case_for_work(s, actor, item.case_id, now)
        not_past(review_at, now, "review_at")
        if status is not None:
            item.status = status
        if review_at is not None:
            item.review_at = review_at
        _bump(s, case)
        audit.record(ctx, s, actor, "case:plan_item_updated", "plan_item", item.id,
                     {"case_id": case.id, "status": item.status})
        uow.commit()


def _child(s: Session, model: Any, row_id: uuid.UUID | str) -> Any:
    rid = id_or_404(row_id)
    row = s.get(model, rid)
    if row is None:
        raise NotFound("not found")
    return row


def schedule_follow_up(ctx: ServiceContext, actor: Actor, case_id: uuid.UUID | str, *, due_at: datetime,
                       owner_user_id: uuid.UUID | str | None = None) -> uuid.UUID:
    due_at = _aware(due_at, "due_at")
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        case = case_for_work(s, actor, case_id, now)
        owner = _check_owner(s, case, owner_user_id) or actor.user_id
        fu = FollowUp(id=uuid.uuid4(), case_id=case.id, owner_user_id=owner, due_at=due_at, created_at=now)
        s.add(fu)
        _bump(s, case)
        audit.record(ctx, s, actor, "case:follow_up_scheduled", "follow_up", fu.id,
                     {"case_id": case.id, "owner_id": owner, "due_at": due_at.isoformat()})
        uow.commit()
        return fu.id


def complete_follow_up(ctx: ServiceContext, actor: Actor, follow_up_id: uuid.UUID | str, *, note: str) -> None:
    note = _text(note, "note", required=True)
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        fu = _child(s, FollowUp, follow_up_id)
        case = case_for_work(s, actor, fu.case_id, now)
        if fu.done_at is not None:
            raise InvalidTransition(N_("the follow-up is already done"))
        fu.done_at = now
        seal(ctx, s, fu, "note_enc", note, case.student_id, now)
        _bump(s, case)
        audit.record(ctx, s, actor, "case:follow_up_done", "follow_up", fu.id, {"case_id": case.id})
        uow.commit()


def log_guardian_contact(ctx: ServiceContext, actor: Actor, case_id: uuid.UUID | str, *, method: str, note: str,
                         at: datetime | None = None) -> uuid.UUID:
    """A home–school contact (家校沟通): method code, when, and a sealed note."""
    if method not in CONTACT_METHODS:
        raise ValidationFailed(N_("unknown contact method"), [{"field": "method", "error": f"one of {CONTACT_METHODS}"}])
    note = _text(note, "note", required=True)
    at = _aware(at, "at", required=False)
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        case = case_for_work(s, actor, case_id, now)
        when = at or now
        if when > now + timedelta(minutes=5):
            raise ValidationFailed(N_("a contact cannot be in the future"), [{"field": "at", "error": "in the future"}])
        gc = GuardianContact(id=uuid.uuid4(), case_id=case.id, by_user_id=actor.user_id, method=method, at=when)
        seal(ctx, s, gc, "note_enc", note, case.student_id, now)
        s.add(gc)
        _bump(s, case)
        audit.record(ctx, s, actor, "case:guardian_contact", "guardian_contact", gc.id,
                     {"case_id": case.id, "method": method})
        uow.commit()
        return gc.id


# ----------------------------------------------------------------------------- reading


def _purpose(view: str) -> str:
    return {FULL: "case_work", SUMMARY: "case_oversight", BREAK_GLASS: "break_glass"}[view]


def case_detail(ctx: ServiceContext, actor: Actor, case_id: uuid.UUID | str) -> dict[str, Any]:
    """The case as the actor may see it. Every decrypted field is in the access log with a purpose."""
    from mh_platform.services import referrals as referral_service

    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        case, view = access_case_by_id(s, actor, case_id, now)
        student = s.get(Student, case.student_id)
        school = s.get(OrgUnit, case.school_unit_id)
        purpose = _purpose(view)
        text = view in (FULL, BREAK_GLASS)
        items = list(s.scalars(sa.select(PlanItem).where(PlanItem.case_id == case.id)
                               .order_by(PlanItem.kind, PlanItem.review_at)))
        fus = list(s.scalars(sa.select(FollowUp).where(FollowUp.case_id == case.id).order_by(FollowUp.due_at)))
        contacts = list(s.scalars(sa.select(GuardianContact).where(GuardianContact.case_id == case.id)
                                  .order_by(GuardianContact.at.desc())))
        sid = case.student_id

        def r(obj: Any, col: str) -> str | None:
            return disclosure.reveal(ctx, s, actor, obj, col, student_id=sid, purpose=purpose) if text else None

        out: dict[str, Any] = {
            "id": str(case.id), "view": view, "status": case.status, "level": case.level,
            "school_id": str(case.school_unit_id), "school_name": school.name if school else "",
            "flag_id": str(case.flag_id) if case.flag_id else None, "student_id": str(sid),
            "pseudonym": student.pseudonym if student else "", "opened_at": case.opened_at.isoformat(),
            "closed_at": case.closed_at.isoformat() if case.closed_at else None,
            "counsellor_user_id": str(case.counsellor_user_id) if case.counsellor_user_id else None,
            "is_case_counsellor": is_case_counsellor(actor, case),
            "leader_informed_at": case.leader_informed_at.isoformat() if case.leader_informed_at else None,
            "student_name": (disclosure.reveal(ctx, s, actor, student, "name_enc", student_id=sid, purpose=purpose)
                             if text and student else None),
            "summary": r(case, "summary_enc"),
            "plan": [{"id": str(i.id), "kind": i.kind, "status": i.status, "review_at": i.review_at.isoformat(),
                      "owner_user_id": str(i.owner_user_id) if i.owner_user_id else None,
                      "overdue": i.status == "active" and i.review_at <= now,
                      "goal": r(i, "goal_enc"), "action": r(i, "action_enc")} for i in items],
            "follow_ups": [{"id": str(f.id), "due_at": f.due_at.isoformat(),
                            "done_at": f.done_at.isoformat() if f.done_at else None,
                            "owner_user_id": str(f.owner_user_id) if f.owner_user_id else None,
                            "overdue": f.done_at is None and f.due_at <= now,
                            "note": r(f, "note_enc")} for f in fus],
            "guardian_contacts": [{"id": str(c.id), "method": c.method, "at": c.at.isoformat(),
                                   "note": r(c, "note_enc")} for c in contacts],
            "counts": {"plan_active": sum(1 for i in items if i.status == "active"),
                       "follow_ups_open": sum(1 for f in fus if f.done_at is None),
                       "guardian_contacts": len(contacts)},
        }
        out["referrals"] = referral_service.referrals_of_case(ctx, s, actor, case, view, now)
        tr = s.scalar(sa.select(Transfer).where(Transfer.case_id == case.id, Transfer.status == "requested"))
        out["pending_transfer_id"] = str(tr.id) if tr else None
        moved = _moved_to_school(s, case)
        out["student_moved_to"] = str(moved) if moved else None
        uow.commit()  # the access-log rows
        return out


def _moved_to_school(s: Session, case: Case) -> uuid.UUID | None:
    """The student's current school if it is not the school holding the case (a handover is needed)."""
    school_id = s.scalar(sa.select(Enrolment.school_unit_id).where(Enrolment.student_id == case.student_id,
                                                                    Enrolment.active.is_(True))
                         .order_by(Enrolment.started_at.desc()).limit(1))
    return school_id if school_id is not None and school_id != case.school_unit_id else None


def list_cases(ctx: ServiceContext, actor: Actor, *, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Cases the actor reaches, without any decrypted text (pseudonym, level, status, counts).

    Counsellors and school leaders: their school's cases. County and city officers: the RED cases
    under their unit (the break-glass candidates), nothing else. Everyone else: none.
    """
    if status is not None and status not in CASE_STATUSES:
        raise ValidationFailed(N_("unknown status"), [{"field": "status", "error": f"one of {CASE_STATUSES}"}])
    if not actor.unit_path or actor.role not in frozenset({Role.COUNSELLOR, Role.SCHOOL_LEADER}) | OFFICER_ROLES:
        return []
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        q = (sa.select(Case, Student.pseudonym, OrgUnit.name).join(Student, Student.id == Case.student_id)
             .join(OrgUnit, OrgUnit.id == Case.school_unit_id).where(scoped(Case.unit_path, actor.unit_path)))
        if actor.role in OFFICER_ROLES:
            q = q.where(Case.level == "red")
        if status is not None:
            q = q.where(Case.status == status)
        rows = s.execute(q.order_by(Case.status, Case.opened_at.desc()).limit(limit)).all()
        ids = [c.id for c, _, _ in rows]
        due: dict[uuid.UUID, datetime] = {}
        if ids:
            for cid, d in s.execute(sa.select(FollowUp.case_id, sa.func.min(FollowUp.due_at))
                                    .where(FollowUp.case_id.in_(ids), FollowUp.done_at.is_(None))
                                    .group_by(FollowUp.case_id)):
                due[cid] = d
        granted: set[uuid.UUID] = set()
        if actor.role in OFFICER_ROLES and actor.user_id is not None and ids:
            granted = set(s.scalars(sa.select(BreakGlass.case_id).where(
                BreakGlass.user_id == actor.user_id, BreakGlass.case_id.in_(ids), BreakGlass.opened_at <= now,
                BreakGlass.expires_at > now)))
        out = []
        for c, pseudonym, school_name in rows:
            out.append({"id": str(c.id), "pseudonym": pseudonym, "school_name": school_name, "level": c.level,
                        "status": c.status, "opened_at": c.opened_at.isoformat(),
                        "mine": actor.user_id is not None and c.counsellor_user_id == actor.user_id,
                        "next_follow_up": due[c.id].isoformat() if c.id in due else None,
                        "overdue": c.id in due and due[c.id] <= now,
                        "break_glass_active": c.id in granted})
        return out


@dataclass(frozen=True)
class Task:
    kind: str  # follow_up / plan_review / referral / handover_needed / handover_incoming
    case_id: uuid.UUID
    due_at: datetime | None
    object_id: uuid.UUID
    pseudonym: str
    detail: str = ""  # a code (the plan kind, the referral state)

    def as_dict(self, now: datetime) -> dict[str, Any]:
        return {"kind": self.kind, "case_id": str(self.case_id), "object_id": str(self.object_id),
                "due_at": self.due_at.isoformat() if self.due_at else None, "pseudonym": self.pseudonym,
                "detail": self.detail, "overdue": self.due_at is not None and self.due_at <= now}


COUNSELLOR_REFERRAL_STATES = ("draft", "declined", "feedback", "school_follow_up")


def due_tasks(ctx: ServiceContext, actor: Actor, now: datetime, *, horizon: timedelta = timedelta(days=7)
              ) -> list[dict[str, Any]]:
    """What waits for a counsellor: follow-ups and plan reviews due within ``horizon`` (theirs, or
    unowned on their cases), referrals waiting for the school, handovers to start or accept.
    Overdue first, then by due time. No names and no clinical text."""
    if actor.role != Role.COUNSELLOR or not actor.unit_path or actor.user_id is None:
        return []
    until = now + horizon
    me = actor.user_id
    with ctx.uow() as uow:
        s = uow.session
        scope = sa.and_(scoped(Case.unit_path, actor.unit_path), Case.status != "closed")
        mine = Case.counsellor_user_id == me
        tasks: list[Task] = []
        for fu, ps in s.execute(sa.select(FollowUp, Student.pseudonym).join(Case, Case.id == FollowUp.case_id)
                                .join(Student, Student.id == Case.student_id)
                                .where(scope, FollowUp.done_at.is_(None), FollowUp.due_at <= until,
                                       sa.or_(FollowUp.owner_user_id == me,
                                              sa.and_(FollowUp.owner_user_id.is_(None), mine)))):
            tasks.append(Task("follow_up", fu.case_id, fu.due_at, fu.id, ps))
        for it, ps in s.execute(sa.select(PlanItem, Student.pseudonym).join(Case, Case.id == PlanItem.case_id)
                                .join(Student, Student.id == Case.student_id)
                                .where(scope, PlanItem.status == "active", PlanItem.review_at <= until,
                                       sa.or_(PlanItem.owner_user_id == me,
                                              sa.and_(PlanItem.owner_user_id.is_(None), mine)))):
            tasks.append(Task("plan_review", it.case_id, it.review_at, it.id, ps, it.kind))
        for ref, ps in s.execute(sa.select(Referral, Student.pseudonym).join(Case, Case.id == Referral.case_id)
                                 .join(Student, Student.id == Case.student_id)
                                 .where(scope, mine, Referral.state.in_(COUNSELLOR_REFERRAL_STATES))):
            tasks.append(Task("referral", ref.case_id, ref.due_at, ref.id, ps, ref.state))
        moved = (sa.select(Case.id, Student.pseudonym).join(Student, Student.id == Case.student_id)
                 .join(Enrolment, sa.and_(Enrolment.student_id == Case.student_id, Enrolment.active.is_(True)))
                 .where(scope, mine, Case.status == "open", Enrolment.school_unit_id != Case.school_unit_id))
        for case_id, ps in s.execute(moved):
            tasks.append(Task("handover_needed", case_id, None, case_id, ps))
        if actor.unit_id is not None:
            for tr, ps in s.execute(sa.select(Transfer, Student.pseudonym).join(Case, Case.id == Transfer.case_id)
                                    .join(Student, Student.id == Case.student_id)
                                    .where(Transfer.to_school_id == actor.unit_id, Transfer.status == "requested")):
                tasks.append(Task("handover_incoming", tr.case_id, tr.requested_at, tr.id, ps))
    far = datetime.max.replace(tzinfo=now.tzinfo)
    tasks.sort(key=lambda t: (t.due_at is None, t.due_at or far))
    return [t.as_dict(now) for t in tasks]


def student_overview(s: Session, student_id: uuid.UUID, now: datetime) -> dict[str, Any]:
    """Minimum-necessary facts about a student (for institutions): pseudonym, age, sex, school name."""
    st = s.get(Student, student_id)
    if st is None:
        raise NotFound("student not found")
    school_id = s.scalar(sa.select(Enrolment.school_unit_id).where(Enrolment.student_id == student_id,
                                                                    Enrolment.active.is_(True))
                         .order_by(Enrolment.started_at.desc()).limit(1))
    school = s.get(OrgUnit, school_id) if school_id else None
    return {"pseudonym": st.pseudonym, "sex": st.sex,
            "age": (now.year - st.birth_year) if st.birth_year else None,
            "school_name": school.name if school else ""}


def openable_flags(ctx: ServiceContext, actor: Actor, *, limit: int = 100) -> list[dict[str, Any]]:
    """Confirmed flags of the counsellor's school whose student has no open case (no names)."""
    if actor.role != Role.COUNSELLOR or not actor.unit_path:
        return []
    with ctx.uow() as uow:
        s = uow.session
        has_case = sa.select(Case.id).where(Case.student_id == Flag.student_id, Case.status != "closed").exists()
        rows = s.execute(sa.select(Flag, Student.pseudonym).join(Student, Student.id == Flag.student_id)
                         .where(scoped(Flag.unit_path, actor.unit_path), Flag.status.in_(CONFIRMED_FLAG_STATUSES),
                                ~has_case)
                         .order_by(Flag.opened_at).limit(limit)).all()
        return [{"id": str(f.id), "pseudonym": ps, "level": f.level, "status": f.status,
                 "opened_at": f.opened_at.isoformat()} for f, ps in rows]
