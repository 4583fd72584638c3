"""Access chokepoints (Zulip style): sensitive rows are fetched only through these functions.

Each answers ``NotFound`` both for "missing" and for "outside your scope", so a caller can never
learn that an object exists outside their units. One condition per line, so coverage proves each.
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core.errors import NotFound
from mh_platform.core.types import Role
from mh_platform.db.models import AcademicYear, Enrolment, Student
from mh_platform.services.context import Actor
from mh_platform.services.org import under

# Roles that reach individual students through their org unit (class or school scope).
UNIT_SCOPED_STUDENT_ROLES = {Role.CLASS_MONITOR, Role.HEAD_TEACHER, Role.COUNSELLOR, Role.SCHOOL_LEADER}


def current_year_id(s: Session) -> uuid.UUID | None:
    return s.scalar(sa.select(AcademicYear.id).where(AcademicYear.is_current.is_(True)))


def enrolment_scope(actor: Actor) -> sa.ColumnElement[bool]:
    """SQL condition: the enrolment's class lies in the actor's unit subtree (false for others)."""
    if actor.role not in UNIT_SCOPED_STUDENT_ROLES or not actor.unit_path:
        return sa.false()
    return under(Enrolment.unit_path, actor.unit_path)


def current_enrolment(s: Session, student_id: uuid.UUID) -> Enrolment | None:
    return s.scalar(sa.select(Enrolment).where(Enrolment.student_id == student_id, Enrolment.active.is_(True))
                    .order_by(Enrolment.started_at.desc()))


def in_scope(actor: Actor, unit_path: str | None) -> bool:
    """Pure path check: ``unit_path`` lies at or under the actor's unit."""
    if not actor.unit_path or not unit_path:
        return False
    return unit_path.startswith(actor.unit_path)


def access_student_by_id(s: Session, actor: Actor, student_id: uuid.UUID) -> tuple[Student, Enrolment]:
    """The student and current enrolment, if the actor's role and unit reach them; else NotFound."""
    if actor.role not in UNIT_SCOPED_STUDENT_ROLES:
        raise NotFound("student not found")
    student = s.get(Student, student_id)
    if student is None:
        raise NotFound("student not found")
    if student.erased_at is not None:
        raise NotFound("student not found")
    enrol = current_enrolment(s, student_id)
    if enrol is None:
        raise NotFound("student not found")
    if not in_scope(actor, enrol.unit_path):
        raise NotFound("student not found")
    return student, enrol


def students_in_scope(s: Session, actor: Actor, *, limit: int, offset: int) -> tuple[list[tuple[Student, Enrolment]], int]:
    """A page of the students the actor reaches by unit, with the total count."""
    cond = sa.and_(enrolment_scope(actor), Enrolment.active.is_(True), Student.erased_at.is_(None))
    base = sa.select(Student, Enrolment).join(Enrolment, Enrolment.student_id == Student.id).where(cond)
    total = s.scalar(sa.select(sa.func.count()).select_from(base.subquery())) or 0
    rows = s.execute(base.order_by(Enrolment.unit_path, Student.pseudonym).limit(limit).offset(offset)).all()
    return [(r[0], r[1]) for r in rows], total
