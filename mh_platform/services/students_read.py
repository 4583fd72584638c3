"""Reading students for a person: the roster in the caller's scope, with only the fields the role may see.

Scope comes from ``services.access`` (unit subtree; 404 for missing and out of scope alike). Which
fields a role sees is ``FIELDS_BY_ROLE`` below; names and student numbers are opened only through
``services.disclosure`` (one access-log row per value). Used by the JSON API and the roster page.

- class monitor (a student): names of their own class only — nothing else about classmates;
- head teacher: own class: name, sex, class;
- counsellor: own school: name, sex, birth year, student number, pseudonym, class, grade;
- school leader: own school, pseudonymous (no names: red flags reach them through the flag pages);
- county / city officers, clinicians and the sysadmin reach no individual student here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core.authz import Permission, can
from mh_platform.core.errors import NotFound, ValidationFailed
from mh_platform.core.i18n import N_
from mh_platform.core.types import UNIT_DEPTH, Role, UnitKind
from mh_platform.db.models import Enrolment, OrgUnit, Student
from mh_platform.services import access, disclosure
from mh_platform.services.context import Actor, ServiceContext

FIELDS_BY_ROLE: dict[Role, tuple[str, ...]] = {
    Role.CLASS_MONITOR: ("id", "name", "class_id", "class_name"),
    Role.HEAD_TEACHER: ("id", "name", "sex", "class_id", "class_name", "grade_level"),
    Role.COUNSELLOR: ("id", "name", "sex", "birth_year", "student_number", "pseudonym", "class_id",
                      "class_name", "grade_level", "school_id", "school_name"),
    Role.SCHOOL_LEADER: ("id", "pseudonym", "sex", "class_id", "class_name", "grade_level", "school_id",
                         "school_name"),
}
# Roles whose unit must be a class (a monitor or head teacher assigned higher up reaches no one).
CLASS_ONLY_ROLES = {Role.CLASS_MONITOR, Role.HEAD_TEACHER}
MAX_PER_PAGE = 200
# The last page a caller may ask for: 100,000 pages of 200 is 20 million students, beyond any city's
# roster. Without a bound, a page number past 64 bits reached the database as the OFFSET and failed
# there (500 from SQLite's OverflowError or PostgreSQL's bigint range) instead of being refused.
MAX_PAGE = 100_000


@dataclass(frozen=True)
class StudentPage:
    items: list[dict[str, Any]]
    page: int
    per_page: int
    total: int


def _path_depth(path: str | None) -> int:
    return len(path.strip("/").split("/")) - 1 if path else -1


def _reaches_students(actor: Actor) -> bool:
    if actor.role not in FIELDS_BY_ROLE or not actor.unit_path:
        return False
    class_only = actor.role in CLASS_ONLY_ROLES
    return not class_only or _path_depth(actor.unit_path) == UNIT_DEPTH[UnitKind.CLASS]


def _field_allowed(role: Role, name: str) -> bool:
    """Identity fields also need the role → permission matrix to agree (belt and braces)."""
    if name == "name":
        return can(role, Permission.STUDENT_READ_ROSTER) or can(role, Permission.STUDENT_READ_NAME)
    if name == "student_number":
        return can(role, Permission.STUDENT_READ_NAME)
    return True


def fields_for(role: Role | None) -> tuple[str, ...]:
    if role is None:
        return ()
    return tuple(f for f in FIELDS_BY_ROLE.get(role, ()) if _field_allowed(role, f))


def _purpose(actor: Actor) -> str:
    return actor.purpose if actor.purpose != "routine" else "roster"


def _views(ctx: ServiceContext, s: Session, actor: Actor, rows: list[tuple[Student, Enrolment]]) -> list[dict]:
    wanted = fields_for(actor.role)
    unit_ids = {e.class_unit_id for _, e in rows} | {e.school_unit_id for _, e in rows}
    names: dict[uuid.UUID, str] = {}
    if unit_ids:
        names = {uid: name for uid, name in s.execute(sa.select(OrgUnit.id, OrgUnit.name)
                                                      .where(OrgUnit.id.in_(unit_ids))).all()}
    students = [st for st, _ in rows]
    purpose = _purpose(actor)
    person_names = disclosure.student_names(ctx, s, actor, students, purpose=purpose) if "name" in wanted else {}
    out = []
    for st, e in rows:
        full: dict[str, Any] = {
            "id": str(st.id), "pseudonym": st.pseudonym, "sex": st.sex, "birth_year": st.birth_year,
            "class_id": str(e.class_unit_id), "class_name": names.get(e.class_unit_id),
            "grade_level": e.grade_level, "school_id": str(e.school_unit_id),
            "school_name": names.get(e.school_unit_id),
        }
        if "name" in wanted:
            full["name"] = person_names.get(st.id)
        if "student_number" in wanted:
            full["student_number"] = disclosure.reveal(ctx, s, actor, st, "student_number_enc", student_id=st.id,
                                                       purpose=purpose)
        out.append({k: full.get(k) for k in wanted})
    return out


def list_students(ctx: ServiceContext, actor: Actor, *, page: int = 1, per_page: int = 50) -> StudentPage:
    """One page of the students in the actor's scope (ordered by class, then pseudonym)."""
    if page < 1:
        raise ValidationFailed("page must be 1 or more", [{"field": "page", "message": "must be >= 1"}])
    if page > MAX_PAGE:
        raise ValidationFailed(N_("page must be at most 100000"), [{"field": "page", "message": f"must be <= {MAX_PAGE}"}])
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise ValidationFailed(f"per_page must be between 1 and {MAX_PER_PAGE}",
                               [{"field": "per_page", "message": f"must be 1..{MAX_PER_PAGE}"}])
    if not _reaches_students(actor):
        return StudentPage([], page, per_page, 0)
    with ctx.uow() as uow:
        s = uow.session
        rows, total = access.students_in_scope(s, actor, limit=per_page, offset=(page - 1) * per_page)
        items = _views(ctx, s, actor, rows)
        uow.commit()  # the access-log rows of the names opened
        return StudentPage(items, page, per_page, total)


def get_student(ctx: ServiceContext, actor: Actor, student_id: uuid.UUID) -> dict[str, Any]:
    """One student, if the actor's role and unit reach them; NotFound otherwise (missing or not)."""
    if not _reaches_students(actor):
        raise NotFound("student not found")
    with ctx.uow() as uow:
        s = uow.session
        st, enrol = access.access_student_by_id(s, actor, student_id)
        item = _views(ctx, s, actor, [(st, enrol)])[0]
        uow.commit()
        return item


def count_in_scope(ctx: ServiceContext, actor: Actor) -> int:
    """How many students the actor reaches (no identity opened, nothing logged)."""
    if not _reaches_students(actor):
        return 0
    with ctx.uow() as uow:
        _rows, total = access.students_in_scope(uow.session, actor, limit=0, offset=0)
        return total
