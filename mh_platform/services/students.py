"""Student identity storage: the ONE place that writes students, enrolments and guardians.

Identity fields are sealed under the student's own data key (crypto-shredding) and indexed with
HMAC blind indexes for exact look-ups. These helpers work inside the caller's transaction
(roster import, demo seed, API sync) and never commit.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core.errors import ValidationFailed
from mh_platform.core.types import UnitKind
from mh_platform.db.models import AcademicYear, Enrolment, Flag, Guardian, OrgUnit, Student
from mh_platform.services.context import SESSION_CTX, ServiceContext


@dataclass(frozen=True)
class GuardianIn:
    name: str
    relation: str = "parent"
    phone: str | None = None


def new_pseudonym() -> str:
    """A random pseudonymous id for aggregates and exports (not derived from identity)."""
    return "P" + secrets.token_hex(8).upper()


def ensure_academic_year(s: Session, name: str, starts_on: date, ends_on: date, current: bool = True) -> AcademicYear:
    year = s.scalar(sa.select(AcademicYear).where(AcademicYear.name == name))
    if year is None:
        if current:
            s.execute(sa.update(AcademicYear).values(is_current=False))
        year = AcademicYear(name=name, starts_on=starts_on, ends_on=ends_on, is_current=current)
        s.add(year)
        s.flush()
    return year


@dataclass(frozen=True)
class StudentIn:
    name: str
    sex: str
    birth_year: int | None
    class_unit: OrgUnit
    student_number: str | None = None
    id_number: str | None = None
    guardians: tuple[GuardianIn, ...] = ()


def add_students_bulk(ctx: ServiceContext, s: Session, items: list[StudentIn], year: AcademicYear,
                      now: datetime) -> list[uuid.UUID]:
    """Bulk form of ``add_student`` for new students (imports, demo): same sealing, AAD and indexes,
    written with executemany in foreign-key order. Validates every item before writing any."""
    from mh_platform.db.models import DataKey

    for i, it in enumerate(items):
        if UnitKind(it.class_unit.kind) != UnitKind.CLASS:
            raise ValidationFailed(f"item {i}: students are enrolled in a class")
        if it.sex not in ("F", "M"):
            raise ValidationFailed(f"item {i}: sex must be F or M")
        if not it.name or not it.name.strip():
            raise ValidationFailed(f"item {i}: name is required")
    ks = ctx.keyring
    keys, studs, enrols, guards, ids = [], [], [], [], []
    for it in items:
        sid = uuid.uuid4()
        key, key_row = ks.new_student_key_row(sid, now)
        keys.append(key_row)
        seal = ks.seal_with
        studs.append({"id": sid, "pseudonym": new_pseudonym(),
                      "name_enc": seal(key, table="student", column="name_enc", row_id=sid, value=it.name.strip()),
                      "id_number_enc": seal(key, table="student", column="id_number_enc", row_id=sid,
                                            value=it.id_number),
                      "id_number_bidx": ks.blind_index(s, "id_number", it.id_number),
                      "student_number_enc": seal(key, table="student", column="student_number_enc", row_id=sid,
                                                 value=it.student_number),
                      "student_number_bidx": ks.blind_index(s, "student_number", it.student_number),
                      "sex": it.sex, "birth_year": it.birth_year, "created_at": now, "erased_at": None})
        c = it.class_unit
        enrols.append({"id": uuid.uuid4(), "student_id": sid, "academic_year_id": year.id, "class_unit_id": c.id,
                       "school_unit_id": uuid.UUID(c.path.strip("/").split("/")[2]), "unit_path": c.path,
                       "grade_level": c.grade_level or 0, "active": True, "started_at": now, "ended_at": None})
        for g in it.guardians:
            gid = uuid.uuid4()
            guards.append({"id": gid, "student_id": sid, "relation": g.relation,
                           "name_enc": seal(key, table="guardian", column="name_enc", row_id=gid, value=g.name),
                           "phone_enc": seal(key, table="guardian", column="phone_enc", row_id=gid, value=g.phone),
                           "phone_bidx": ks.blind_index(s, "phone", g.phone), "created_at": now})
        ids.append(sid)
    s.flush()
    for model, rows in ((DataKey, keys), (Student, studs), (Enrolment, enrols), (Guardian, guards)):
        if rows:
            s.execute(sa.insert(model), rows)
    return ids


def find_by_student_number(ctx: ServiceContext, s: Session, student_number: str) -> Student | None:
    bidx = ctx.keyring.blind_index(s, "student_number", student_number)
    return s.scalar(sa.select(Student).where(Student.student_number_bidx == bidx))


def add_student(ctx: ServiceContext, s: Session, *, name: str, sex: str, birth_year: int | None,
                class_unit: OrgUnit, year: AcademicYear, now: datetime, student_number: str | None = None,
                id_number: str | None = None, guardians: list[GuardianIn] | tuple[GuardianIn, ...] = (),
                student_id: uuid.UUID | None = None) -> Student:
    """Create a student with sealed identity, enrol them in ``class_unit`` for ``year``, add guardians."""
    if UnitKind(class_unit.kind) != UnitKind.CLASS:
        raise ValidationFailed("students are enrolled in a class")
    if sex not in ("F", "M"):
        raise ValidationFailed("sex must be F or M")
    if not name or not name.strip():
        raise ValidationFailed("name is required")
    sid = student_id or uuid.uuid4()
    ks = ctx.keyring

    def seal(column: str, value: str | None) -> bytes | None:
        return ks.seal(s, table="student", column=column, row_id=sid, value=value, student_id=sid, now=now)

    st = Student(id=sid, pseudonym=new_pseudonym(), name_enc=seal("name_enc", name.strip()),
                 id_number_enc=seal("id_number_enc", id_number),
                 id_number_bidx=ks.blind_index(s, "id_number", id_number),
                 student_number_enc=seal("student_number_enc", student_number),
                 student_number_bidx=ks.blind_index(s, "student_number", student_number),
                 sex=sex, birth_year=birth_year, created_at=now)
    s.add(st)
    s.flush()  # models declare no relationships, so the unit of work needs the parent row first
    enrol(s, st, class_unit, year, now, new_student=True)
    for g in guardians:
        add_guardian(ctx, s, st, g, now)
    return st


def add_guardian(ctx: ServiceContext, s: Session, student: Student, g: GuardianIn, now: datetime) -> Guardian:
    gid = uuid.uuid4()
    ks = ctx.keyring
    row = Guardian(id=gid, student_id=student.id, relation=g.relation,
                   name_enc=ks.seal(s, table="guardian", column="name_enc", row_id=gid, value=g.name,
                                    student_id=student.id, now=now),
                   phone_enc=ks.seal(s, table="guardian", column="phone_enc", row_id=gid, value=g.phone,
                                     student_id=student.id, now=now),
                   phone_bidx=ks.blind_index(s, "phone", g.phone), created_at=now)
    s.add(row)
    return row


def enrol(s: Session, student: Student, class_unit: OrgUnit, year: AcademicYear, now: datetime,
          ctx: ServiceContext | None = None, *, new_student: bool = False) -> Enrolment:
    """Put the student in ``class_unit`` for ``year``. Earlier enrolments are kept (history).

    A student who moves takes their open flag along, in this transaction (``flags.follow_enrolment``:
    the new class's head teacher or the new school's counsellor holds it, with its event, audit entry
    and notices), and loses the unfinished codes of campaigns that do not screen the new class
    (``campaigns.revoke_codes_after_move``). ``ctx`` defaults to the context whose unit of work opened ``s``."""
    from mh_platform.services import flags  # late: flags reaches students' enrolments, not the reverse

    school_id = uuid.UUID(class_unit.path.strip("/").split("/")[2])
    existing = None
    if not new_student:
        flags.lock_audit(s)  # the flag writers' lock order: audit lock, then enrolment and flag rows
        existing = s.scalar(sa.select(Enrolment).where(Enrolment.student_id == student.id,
                                                       Enrolment.academic_year_id == year.id))
        s.execute(sa.update(Enrolment).where(Enrolment.student_id == student.id, Enrolment.active.is_(True))
                  .values(active=False, ended_at=now))
    if existing is not None:  # a move within the same year: keep the old row's history in events
        existing.class_unit_id, existing.school_unit_id = class_unit.id, school_id
        existing.unit_path, existing.grade_level = class_unit.path, class_unit.grade_level or 0
        existing.active, existing.ended_at = True, None
        e = existing
    else:
        e = Enrolment(student_id=student.id, academic_year_id=year.id, class_unit_id=class_unit.id,
                      school_unit_id=school_id, unit_path=class_unit.path, grade_level=class_unit.grade_level or 0,
                      active=True, started_at=now)
        s.add(e)
    if not new_student:
        from mh_platform.services.campaigns import revoke_codes_after_move  # late: campaigns reads enrolments

        revoke_codes_after_move(s, student.id, e, now)  # no code of a campaign that no longer screens the class
        ctx = ctx or s.info.get(SESSION_CTX)
        if ctx is not None:
            flags.follow_enrolment(ctx, s, student.id, e, now)
        elif s.scalar(sa.select(Flag.id).where(Flag.student_id == student.id, Flag.status != "closed")):
            raise RuntimeError("students.enrol needs the service context to move the student's open flag")
    return e


def update_identity(ctx: ServiceContext, s: Session, student: Student, *, now: datetime, name: str | None = None,
                    sex: str | None = None, birth_year: int | None = None) -> None:
    """Correct a student's identity fields (roster re-import); the name is re-sealed under the student's key."""
    if name is not None:
        if not name.strip():
            raise ValidationFailed("name is required")
        student.name_enc = ctx.keyring.seal(s, table="student", column="name_enc", row_id=student.id,
                                            value=name.strip(), student_id=student.id, now=now)
    if sex is not None:
        if sex not in ("F", "M"):
            raise ValidationFailed("sex must be F or M")
        student.sex = sex
    if birth_year is not None:
        student.birth_year = birth_year
