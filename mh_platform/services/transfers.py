"""Case transfers: a counsellor-to-counsellor handover when a student with an open case moves school.

1. The student is enrolled in a class of another school (``services.students.enrol``); the old
   counsellor's queue shows ``handover_needed``. The student's open flag moves at once with the
   enrolment (``flags.follow_enrolment``): the new school's counsellor is told and triages it while
   the case waits for the handover.
2. The old counsellor requests the handover with a sealed note (``request_transfer``); the case is
   ``transferring``; the new school's counsellors are notified and see the request (pseudonym,
   level, the handover note — opened through disclosure, purpose ``transfer_handover``).
3. A counsellor of the new school accepts (``accept_transfer``): the case, its plan, follow-ups,
   contacts and referrals move to the new school (``school_unit_id``/``unit_path``); open tasks of
   the old counsellor pass to the new one. From that moment the old school cannot reach the case
   (access is by the case's unit path). The Transfer row, the events and the audit chain keep the
   history. The old counsellor may cancel before acceptance.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from mh_platform.core.errors import Conflict, Forbidden, InvalidTransition, NotFound
from mh_platform.core.i18n import N_
from mh_platform.core.types import Role
from mh_platform.db.models import Case, FollowUp, OrgUnit, PlanItem, Referral, Student, Transfer, User
from mh_platform.services import audit, disclosure, notify
from mh_platform.services.cases import (
    _bump,
    _moved_to_school,
    _text,
    case_for_work,
    notify_users,
    rowcount,
    seal,
    users_at,
)
from mh_platform.services.context import Actor, ServiceContext
from mh_platform.services.ids import id_or_404


def request_transfer(ctx: ServiceContext, actor: Actor, case_id: uuid.UUID | str, *, handover_note: str) -> uuid.UUID:
    """The old school's counsellor hands the case over to the student's new school."""
    note = _text(handover_note, "handover_note", required=True)
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        case = case_for_work(s, actor, case_id, now)
        if case.status != "open":
            raise InvalidTransition(N_("a handover is already pending"))
        to_school_id = _moved_to_school(s, case)
        if to_school_id is None:
            raise InvalidTransition(N_("the student has not moved to another school"))
        to_school = s.get(OrgUnit, to_school_id)
        receivers = users_at(s, Role.COUNSELLOR, to_school_id)
        if not receivers:
            # a handover nobody could accept would leave the case waiting on no one: it stays with its
            # counsellor, who still acts, until the new school has one (the coverage report lists it)
            raise InvalidTransition(N_("the new school has no counsellor yet; the case stays with you until it has one"))
        _bump(s, case)
        case.status = "transferring"
        tr = Transfer(id=uuid.uuid4(), case_id=case.id, from_school_id=case.school_unit_id, to_school_id=to_school_id,
                      requested_by=actor.user_id, requested_at=now, status="requested")
        seal(ctx, s, tr, "handover_enc", note, case.student_id, now)
        s.add(tr)
        s.flush()
        ids = notify_users(s, receivers, template="transfer_requested",
                           unit_name=to_school.name if to_school else "", link=f"/transfers/{tr.id}",
                           dedupe=f"transfer:{tr.id}:requested", now=now)
        audit.record(ctx, s, actor, "transfer:requested", "case_transfer", tr.id,
                     {"case_id": case.id, "from_school": case.school_unit_id, "to_school": to_school_id})
        uow.after_commit(lambda: notify.send_soon(ctx, ids))
        uow.commit()
        return tr.id


def _incoming(s: Any, actor: Actor, transfer_id: uuid.UUID | str) -> Transfer:
    """A pending transfer addressed to the actor's school (counsellors only); NotFound otherwise."""
    tid = id_or_404(transfer_id, "transfer")
    tr = s.get(Transfer, tid)
    if tr is None or actor.role != Role.COUNSELLOR or tr.to_school_id != actor.unit_id:
        raise NotFound("transfer not found")
    if tr.status == "cancelled":  # withdrawn: the receiving school has no business with it any more
        raise NotFound("transfer not found")
    return tr


def transfer_detail(ctx: ServiceContext, actor: Actor, transfer_id: uuid.UUID | str) -> dict[str, Any]:
    """What the receiving counsellor sees before accepting: pseudonym, level, schools, the handover note."""
    with ctx.uow() as uow:
        s = uow.session
        tr = _incoming(s, actor, transfer_id)
        case = s.get(Case, tr.case_id)
        if case is None:
            raise NotFound("transfer not found")
        student = s.get(Student, case.student_id)
        from_school = s.get(OrgUnit, tr.from_school_id)
        out = {"id": str(tr.id), "case_id": str(case.id), "status": tr.status, "level": case.level,
               "pseudonym": student.pseudonym if student else "", "from_school": from_school.name if from_school else "",
               "requested_at": tr.requested_at.isoformat(),
               "accepted_at": tr.accepted_at.isoformat() if tr.accepted_at else None,
               "handover_note": disclosure.reveal(ctx, s, actor, tr, "handover_enc", student_id=case.student_id,
                                                  purpose="transfer_handover") if tr.status == "requested" else None}
        uow.commit()
        return out


def incoming_transfers(ctx: ServiceContext, actor: Actor) -> list[dict[str, Any]]:
    """Pending handovers to the actor's school (no text)."""
    if actor.role != Role.COUNSELLOR or actor.unit_id is None:
        return []
    with ctx.uow() as uow:
        rows = uow.session.execute(
            sa.select(Transfer, Case.level, Student.pseudonym, OrgUnit.name).join(Case, Case.id == Transfer.case_id)
            .join(Student, Student.id == Case.student_id).join(OrgUnit, OrgUnit.id == Transfer.from_school_id)
            .where(Transfer.to_school_id == actor.unit_id, Transfer.status == "requested")
            .order_by(Transfer.requested_at)).all()
        return [{"id": str(t.id), "level": lvl, "pseudonym": ps, "from_school": name,
                 "requested_at": t.requested_at.isoformat()} for t, lvl, ps, name in rows]


def accept_transfer(ctx: ServiceContext, actor: Actor, transfer_id: uuid.UUID | str) -> uuid.UUID:
    """The new school's counsellor takes the case over: it and everything in it move to the new school."""
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        tr = _incoming(s, actor, transfer_id)
        if tr.status != "requested":
            raise InvalidTransition(N_("the handover is %(status)s"), params={"status": tr.status})
        case = s.get(Case, tr.case_id)
        school = s.get(OrgUnit, tr.to_school_id)
        if case is None or school is None or case.status != "transferring":
            raise Conflict(N_("the case is no longer waiting for a handover"))
        res = s.execute(sa.update(Transfer).where(Transfer.id == tr.id, Transfer.status == "requested")
                        .values(status="accepted", accepted_by=actor.user_id, accepted_at=now)
                        .execution_options(synchronize_session=False))
        if rowcount(res) != 1:
            raise Conflict(N_("the handover was taken meanwhile"))
        old_counsellor = case.counsellor_user_id
        _bump(s, case)
        case.school_unit_id, case.unit_path = school.id, school.path
        case.counsellor_user_id, case.status = actor.user_id, "open"
        s.execute(sa.update(Referral).where(Referral.case_id == case.id)
                  .values(school_unit_id=school.id, unit_path=school.path).execution_options(synchronize_session=False))
        # Open tasks owned by anyone at the old school pass to the new counsellor.
        s.execute(sa.update(PlanItem).where(PlanItem.case_id == case.id, PlanItem.status == "active")
                  .values(owner_user_id=actor.user_id).execution_options(synchronize_session=False))
        s.execute(sa.update(FollowUp).where(FollowUp.case_id == case.id, FollowUp.done_at.is_(None))
                  .values(owner_user_id=actor.user_id).execution_options(synchronize_session=False))
        ids: list[uuid.UUID] = []
        if old_counsellor is not None:
            old = s.get(User, old_counsellor)
            if old is not None and old.is_active:
                ids = notify_users(s, [old], template="transfer_accepted", unit_name=school.name, link="/cases",
                                   dedupe=f"transfer:{tr.id}:accepted", now=now)
        audit.record(ctx, s, actor, "transfer:accepted", "case_transfer", tr.id,
                     {"case_id": case.id, "from_school": tr.from_school_id, "to_school": school.id})
        uow.after_commit(lambda: notify.send_soon(ctx, ids))
        uow.commit()
        return case.id


def cancel_transfer(ctx: ServiceContext, actor: Actor, transfer_id: uuid.UUID | str) -> None:
    """The old school's counsellor withdraws a pending handover; the case stays with them."""
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        tid = id_or_404(transfer_id, "transfer")
        tr = s.get(Transfer, tid)
        if tr is None:
            raise NotFound("transfer not found")
        case = case_for_work(s, actor, tr.case_id, now)
        if actor.role != Role.COUNSELLOR:
            raise Forbidden(N_("only a counsellor cancels a handover"))
        if tr.status != "requested":
            raise InvalidTransition(N_("the handover is %(status)s"), params={"status": tr.status})
        tr.status = "cancelled"
        _bump(s, case)
        case.status = "open"
        audit.record(ctx, s, actor, "transfer:cancelled", "case_transfer", tr.id, {"case_id": case.id})
        uow.commit()
