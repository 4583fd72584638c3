"""Concerns: a class psychology monitor (a student) or a teacher reports something they saw.

A monitor reports about a classmate (same class only); a head teacher about a student of their
class; a counsellor about a student of their school. The note ("what was seen") is sealed; the
category and urgency are codes. The concern opens or joins the student's flag in the same
transaction: a monitor's concern starts at the class tier (the head teacher reviews it), a
teacher's at the school tier (policy ``start_tier.concern``). Urgency immediate / soon / routine
gives red / orange / yellow by the default flag policy.

Afterwards the reporter sees only the status of their own submissions (received / in progress /
closed) — never the flag's level, tier, scores or anything about other students.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from mh_platform.core.errors import Forbidden, ValidationFailed
from mh_platform.core.flag_rules import Urgency
from mh_platform.core.i18n import N_
from mh_platform.core.types import Role
from mh_platform.db.models import Concern, Flag, FlagEvent, Student
from mh_platform.services import audit
from mh_platform.services.access import access_student_by_id
from mh_platform.services.context import Actor, ServiceContext
from mh_platform.services.flags import _commit_and_send, raise_from_concern_in
from mh_platform.services.ids import id_or_404

CATEGORIES: dict[str, tuple[str, str]] = {
    "mood": ("情绪低落或明显变化", "low mood or a marked change"),
    "self_harm": ("自伤迹象或言语", "signs or talk of self-harm"),
    "withdrawal": ("退缩、孤立", "withdrawal, isolation"),
    "conflict": ("人际冲突或受欺凌", "conflict or bullying"),
    "family": ("家庭变故", "family difficulties"),
    "behaviour": ("行为异常", "unusual behaviour"),
    "other": ("其他", "other"),
}
URGENCY_LABELS = {"immediate": ("紧急", "immediate"), "soon": ("尽快", "soon"), "routine": ("一般", "routine")}
REPORTER_ROLES = frozenset({Role.CLASS_MONITOR, Role.HEAD_TEACHER, Role.COUNSELLOR})
MAX_NOTE = 2000

# What a reporter reads of their concern, in coarse terms.
_STATUS_FOR_REPORTER = {"raised": "received"}


def reporter_status(flag_status: str | None) -> str:
    """A concern's status from the status of the flag it joined: received / in progress / closed."""
    if flag_status is None:
        return "received"
    if flag_status == "closed":
        return "closed"
    return _STATUS_FOR_REPORTER.get(flag_status, "in_progress")


def _status_since_concern() -> sa.Case:
    """The flag's status as moved by staff since the concern was logged: "closed", "in_progress"
    for any other move, None for none — what a class monitor reads of their concern.

    A concern joins the classmate's open flag if there is one, so the flag's current status would
    tell the monitor — a student, with no flag permission — that a flag existed before and how far
    staff had got with it. Only status changes made after the concern (acknowledged, …, closed)
    count: the monitor learns that their concern is being handled, nothing of the flag's history."""
    def moved(*where: sa.ColumnElement[bool]) -> sa.Exists:
        return sa.exists().where(FlagEvent.flag_id == Concern.flag_id, FlagEvent.at >= Concern.created_at,
                                 FlagEvent.from_status != FlagEvent.to_status, *where)

    return sa.case((moved(FlagEvent.to_status == "closed"), "closed"),
                   (moved(FlagEvent.to_status != "raised"), "in_progress"), else_=None)


def submit_concern(ctx: ServiceContext, actor: Actor, *, student_id: uuid.UUID | str, category: str,
                   urgency: str, note: str | None) -> dict[str, Any]:
    """Log a concern; opens or joins the student's flag. Returns ``{"concern_id", "flag_id", "status"}``."""
    if actor.role not in REPORTER_ROLES:
        raise Forbidden(N_("this role does not report concerns"))
    if category not in CATEGORIES:
        raise ValidationFailed(N_("unknown category"), [{"field": "category", "error": "invalid"}])
    try:
        Urgency(urgency)
    except ValueError:
        raise ValidationFailed(N_("urgency must be immediate, soon or routine"),
                               [{"field": "urgency", "error": "invalid"}]) from None
    note = (note or "").strip()
    if len(note) > MAX_NOTE:
        raise ValidationFailed(N_("the note is too long"), [{"field": "note", "error": f"at most {MAX_NOTE} characters"}])
    sid = id_or_404(student_id, "student")
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        student, enrol = access_student_by_id(s, actor, sid)  # NotFound outside the reporter's class/school
        if actor.role == Role.CLASS_MONITOR and actor.student_id == student.id:
            raise ValidationFailed(N_("a monitor reports about classmates, not themselves"))
        cid = uuid.uuid4()
        note_enc = ctx.keyring.seal(s, table="concern", column="note_enc", row_id=cid, value=note,
                                    student_id=student.id, now=now) if note else None
        concern = Concern(id=cid, student_id=student.id, reporter_user_id=actor.user_id,
                          reporter_role=Role(actor.role).value, category=category, urgency=urgency, note_enc=note_enc,
                          status="received", unit_path=enrol.unit_path, created_at=now)
        s.add(concern)
        s.flush()
        audit.record(ctx, s, actor, "concern:submitted", "concern", cid,
                     {"category": category, "urgency": urgency, "reporter_role": Role(actor.role).value,
                      "has_note": note_enc is not None})
        out = raise_from_concern_in(s, ctx, actor, concern, now)
        concern.flag_id = out.flag_id
        result = {"concern_id": str(cid), "flag_id": str(out.flag_id), "status": "received"}
        _commit_and_send(ctx, uow, out.outbox_ids)
        return result


def my_concerns(ctx: ServiceContext, actor: Actor, *, limit: int = 100) -> list[dict[str, Any]]:
    """The reporter's own concerns: when, category, urgency, status. Nothing of the flag beyond status.

    Monitors see only their own; head teachers and counsellors also see their own here (their flag
    queues show the rest)."""
    if actor.role not in REPORTER_ROLES or actor.user_id is None:
        return []
    with ctx.uow() as uow:
        s = uow.session
        status = _status_since_concern() if actor.role == Role.CLASS_MONITOR else Flag.status
        rows = s.execute(sa.select(Concern, status, Student.pseudonym)
                         .outerjoin(Flag, Flag.id == Concern.flag_id)
                         .join(Student, Student.id == Concern.student_id)
                         .where(Concern.reporter_user_id == actor.user_id)
                         .order_by(Concern.created_at.desc()).limit(max(1, min(limit, 500)))).all()
        out = []
        for c, flag_status, pseudonym in rows:
            item = {"id": str(c.id), "created_at": c.created_at.isoformat(), "category": c.category,
                    "urgency": c.urgency, "status": reporter_status(flag_status), "student_id": str(c.student_id),
                    "pseudonym": pseudonym}
            if actor.role != Role.CLASS_MONITOR:
                item["flag_id"] = str(c.flag_id) if c.flag_id else None
            out.append(item)
        return out


def classmates(ctx: ServiceContext, actor: Actor) -> list[dict[str, Any]]:
    """The roster a reporter picks from (names revealed through disclosure, access-logged)."""
    from mh_platform.services.access import students_in_scope
    from mh_platform.services.disclosure import student_names

    if actor.role not in REPORTER_ROLES:
        return []
    with ctx.uow() as uow:
        s = uow.session
        rows, _ = students_in_scope(s, actor, limit=200, offset=0)
        students = [st for st, _e in rows if st.id != actor.student_id]
        names = student_names(ctx, s, actor, students, purpose="concern_report")
        uow.commit()
        return [{"id": str(st.id), "name": names.get(st.id) or st.pseudonym} for st in students]


def list_concerns(ctx: ServiceContext, actor: Actor, *, limit: int = 200) -> list[dict[str, Any]]:
    """Concerns the actor may list: a monitor only their own; a head teacher their class's; a counsellor
    their school's (codes and status only — the note stays sealed; the reporter is not named)."""
    from mh_platform.services.org import under

    if actor.role == Role.CLASS_MONITOR:
        return my_concerns(ctx, actor, limit=limit)
    if actor.role not in (Role.HEAD_TEACHER, Role.COUNSELLOR) or not actor.unit_path:
        return []
    with ctx.uow() as uow:
        s = uow.session
        rows = s.execute(sa.select(Concern, Flag.status).outerjoin(Flag, Flag.id == Concern.flag_id)
                         .where(under(Concern.unit_path.expression, actor.unit_path))
                         .order_by(Concern.created_at.desc()).limit(max(1, min(limit, 500)))).all()
        return [{"id": str(c.id), "created_at": c.created_at.isoformat(), "category": c.category,
                 "urgency": c.urgency, "status": reporter_status(st), "student_id": str(c.student_id),
                 "flag_id": str(c.flag_id) if c.flag_id else None, "reporter_role": c.reporter_role,
                 "mine": c.reporter_user_id == actor.user_id} for c, st in rows]
