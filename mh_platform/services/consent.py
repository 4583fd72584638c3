"""Guardian consent (监护人知情同意) per student per school year.

A student without a *granted* consent for the campaign's school year gets no access code, no
reminder, and no accepted response: ``consent_ok`` is the one SQL condition every screening
service uses, so the rule is enforced in the services, not only in pages. Withdrawal takes effect
at once: the student's unused and unfinished codes are revoked in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core.errors import Forbidden, NotFound, ValidationFailed
from mh_platform.core.i18n import N_
from mh_platform.core.types import Role
from mh_platform.db.models import AcademicYear, AccessCode, Campaign, Consent, Enrolment, OrgUnit
from mh_platform.services import audit
from mh_platform.services.access import access_student_by_id, current_year_id, in_scope
from mh_platform.services.context import Actor, ServiceContext

STATUSES = ("granted", "refused", "withdrawn")
METHODS = ("paper", "online", "phone")
# who records consent: the class's head teacher and the school's counsellor (and leader)
RECORDERS = {Role.HEAD_TEACHER, Role.COUNSELLOR, Role.SCHOOL_LEADER}
COVERAGE_VIEWERS = {Role.HEAD_TEACHER, Role.COUNSELLOR, Role.SCHOOL_LEADER}


def consent_ok(student_id_col: Any, year_id: Any) -> sa.ColumnElement[bool]:
    """SQL: the student has a granted (and not withdrawn) consent for the school year."""
    return sa.exists().where(Consent.student_id == student_id_col, Consent.academic_year_id == year_id,
                             Consent.status == "granted", Consent.withdrawn_at.is_(None))


def has_consent(s: Session, student_id: uuid.UUID, year_id: uuid.UUID) -> bool:
    return bool(s.scalar(sa.select(consent_ok(sa.literal(student_id, sa.Uuid()), year_id))))


def _year(s: Session, year_id: uuid.UUID | None) -> uuid.UUID:
    yid = year_id or current_year_id(s)
    if yid is None or s.get(AcademicYear, yid) is None:
        raise ValidationFailed(N_("no current school year: create one first"))
    return yid


@dataclass(frozen=True)
class ConsentIn:
    student_id: uuid.UUID
    status: str  # granted / refused
    method: str = "paper"
    decided_on: date | None = None


def _write(ctx: ServiceContext, s: Session, actor: Actor, item: ConsentIn, yid: uuid.UUID) -> Consent:
    if actor.role not in RECORDERS:
        raise Forbidden(N_("your role does not record consent"))
    if item.status not in ("granted", "refused"):
        raise ValidationFailed(N_("status must be granted or refused (use withdraw for a withdrawal)"))
    if item.method not in METHODS:
        raise ValidationFailed(f"method must be one of {', '.join(METHODS)}")
    access_student_by_id(s, actor, item.student_id)  # NotFound when out of scope
    now = ctx.now()
    decided = item.decided_on or now.date()
    if decided > now.date():
        raise ValidationFailed(N_("the decision date cannot be in the future"))
    row = s.scalar(sa.select(Consent).where(Consent.student_id == item.student_id, Consent.academic_year_id == yid))
    if row is None:
        row = Consent(id=uuid.uuid4(), student_id=item.student_id, academic_year_id=yid, status=item.status,
                      method=item.method, decided_on=decided, recorded_by=actor.user_id, recorded_at=now)
        s.add(row)
    else:
        row.status, row.method, row.decided_on = item.status, item.method, decided
        row.recorded_by, row.recorded_at, row.withdrawn_at = actor.user_id, now, None
    if item.status != "granted":
        _revoke_codes(s, item.student_id, yid, now)
    s.flush()
    audit.record(ctx, s, actor, "consent:recorded", "consent", row.id,
                 {"student_id": item.student_id, "status": item.status, "method": item.method})
    return row


def record(ctx: ServiceContext, actor: Actor, student_id: uuid.UUID, status: str, method: str = "paper",
           decided_on: date | None = None, year_id: uuid.UUID | None = None) -> uuid.UUID:
    """Record (or correct) the guardian's decision for one student and school year."""
    return record_many(ctx, actor, [ConsentIn(student_id, status, method, decided_on)], year_id)[0]


def record_many(ctx: ServiceContext, actor: Actor, items: Iterable[ConsentIn],
                year_id: uuid.UUID | None = None) -> list[uuid.UUID]:
    """Several decisions in one transaction (a class's returned paper forms): all or nothing."""
    with ctx.uow() as uow:
        s = uow.session
        yid = _year(s, year_id)
        ids = [_write(ctx, s, actor, it, yid).id for it in items]
        uow.commit()
    return ids


def _revoke_codes(s: Session, student_id: uuid.UUID, year_id: uuid.UUID, now) -> int:
    camp_ids = sa.select(Campaign.id).where(Campaign.academic_year_id == year_id)
    res = s.execute(sa.update(AccessCode).where(AccessCode.student_id == student_id,
                                                AccessCode.campaign_id.in_(camp_ids),
                                                AccessCode.completed_at.is_(None), AccessCode.revoked_at.is_(None))
                    .values(revoked_at=now, sitting_hash=None))  # a live sitting ends with the code
    return res.rowcount or 0  # type: ignore[attr-defined]


def withdraw(ctx: ServiceContext, actor: Actor, student_id: uuid.UUID, year_id: uuid.UUID | None = None) -> None:
    """The guardian withdraws consent: no further code, reminder or response from now on."""
    if actor.role not in RECORDERS:
        raise Forbidden(N_("your role does not record consent"))
    with ctx.uow() as uow:
        s = uow.session
        yid = _year(s, year_id)
        access_student_by_id(s, actor, student_id)
        row = s.scalar(sa.select(Consent).where(Consent.student_id == student_id, Consent.academic_year_id == yid))
        if row is None or row.status != "granted":
            raise ValidationFailed(N_("there is no granted consent to withdraw"))
        now = ctx.now()
        row.status, row.withdrawn_at, row.recorded_by, row.recorded_at = "withdrawn", now, actor.user_id, now
        revoked = _revoke_codes(s, student_id, yid, now)
        audit.record(ctx, s, actor, "consent:withdrawn", "consent", row.id,
                     {"student_id": student_id, "codes_revoked": revoked})
        uow.commit()


@dataclass(frozen=True)
class Coverage:
    class_unit_id: uuid.UUID
    class_name: str
    enrolled: int
    granted: int
    refused: int
    withdrawn: int
    missing: int

    @property
    def rate(self) -> float:
        return self.granted / self.enrolled if self.enrolled else 0.0


def coverage(ctx: ServiceContext, actor: Actor, unit_id: uuid.UUID | None = None,
             year_id: uuid.UUID | None = None) -> list[Coverage]:
    """Consent coverage per class under ``unit_id`` (default: the actor's unit), counts only."""
    if actor.role not in COVERAGE_VIEWERS or not actor.unit_path:
        raise Forbidden(N_("consent coverage is for head teachers, counsellors and school leaders"))
    with ctx.uow() as uow:
        s = uow.session
        yid = _year(s, year_id)
        unit = s.get(OrgUnit, unit_id) if unit_id else s.get(OrgUnit, actor.unit_id)
        if unit is None or not in_scope(actor, unit.path):
            raise NotFound("unit not found")
        from mh_platform.services.org import under

        st = sa.case((Consent.withdrawn_at.is_not(None), "withdrawn"), else_=Consent.status)
        q = (sa.select(Enrolment.class_unit_id, OrgUnit.name, OrgUnit.grade_level, st.label("st"), sa.func.count())
             .join(OrgUnit, OrgUnit.id == Enrolment.class_unit_id)
             .outerjoin(Consent, sa.and_(Consent.student_id == Enrolment.student_id, Consent.academic_year_id == yid))
             .where(Enrolment.academic_year_id == yid, Enrolment.active.is_(True), under(Enrolment.unit_path, unit.path))
             .group_by(Enrolment.class_unit_id, OrgUnit.name, OrgUnit.grade_level, st))
        acc: dict[uuid.UUID, dict] = {}
        grade: dict[uuid.UUID, int | None] = {}
        for cid, name, level, status, n in s.execute(q):
            grade[cid] = level
            d = acc.setdefault(cid, {"name": name, "granted": 0, "refused": 0, "withdrawn": 0, "missing": 0})
            d[status or "missing"] += n
        out = [Coverage(cid, d["name"], d["granted"] + d["refused"] + d["withdrawn"] + d["missing"], d["granted"],
                        d["refused"], d["withdrawn"], d["missing"]) for cid, d in acc.items()]
        from mh_platform.services.org import unit_sort_key

        return sorted(out, key=lambda c: unit_sort_key(c.class_name, grade[c.class_unit_id]))


@dataclass(frozen=True)
class ConsentRow:
    student_id: uuid.UUID
    name: str | None
    status: str  # granted / refused / withdrawn / missing
    method: str | None
    decided_on: date | None


def class_list(ctx: ServiceContext, actor: Actor, class_unit_id: uuid.UUID,
               year_id: uuid.UUID | None = None) -> tuple[str, list[ConsentRow]]:
    """(class name, one row per enrolled student) for recording consent; names through disclosure."""
    if actor.role not in RECORDERS or not actor.unit_path:
        raise Forbidden(N_("your role does not record consent"))
    from mh_platform.db.models import Student
    from mh_platform.services.disclosure import student_names

    with ctx.uow() as uow:
        s = uow.session
        yid = _year(s, year_id)
        cls = s.get(OrgUnit, class_unit_id)
        if cls is None or cls.kind != "class" or not in_scope(actor, cls.path):
            raise NotFound("class not found")
        rows = s.execute(sa.select(Student, Consent)
                         .join(Enrolment, Enrolment.student_id == Student.id)
                         .outerjoin(Consent, sa.and_(Consent.student_id == Student.id, Consent.academic_year_id == yid))
                         .where(Enrolment.class_unit_id == cls.id, Enrolment.academic_year_id == yid,
                                Enrolment.active.is_(True), Student.erased_at.is_(None))).all()
        names = student_names(ctx, s, actor, [r[0] for r in rows], purpose="consent_recording")
        out = [ConsentRow(st.id, names.get(st.id), c.status if c else "missing", c.method if c else None,
                          c.decided_on if c else None) for st, c in rows]
        name = cls.name
        uow.commit()  # the access-log rows
    return name, sorted(out, key=lambda r: r.name or "")
