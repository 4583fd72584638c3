"""A small real city for the flag tests: two counties' worth of units, students, and one user per role.

Built through the services (org units, sealed students, accounts), committed into the test's
database (rolled back with ``ctx``, or kept with ``fresh_ctx``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date

import pytest
import sqlalchemy as sa

from mh_platform.core.types import Role, UnitKind
from mh_platform.db.models import OrgUnit, User
from mh_platform.services import auth, students
from mh_platform.services.context import SYSTEM, Actor
from mh_platform.services.org import add_unit

PASSWORD = "correct horse 1"


@dataclass
class World:
    city: OrgUnit
    county: OrgUnit
    school: OrgUnit
    klass: OrgUnit
    klass2: OrgUnit
    school2: OrgUnit
    klass_other: OrgUnit
    county2: OrgUnit
    school3: OrgUnit
    klass3: OrgUnit
    students: list[uuid.UUID] = field(default_factory=list)  # in klass
    students2: list[uuid.UUID] = field(default_factory=list)  # in klass2 (same school)
    students_other: list[uuid.UUID] = field(default_factory=list)  # in school2 (same county)
    students3: list[uuid.UUID] = field(default_factory=list)  # in county2
    actors: dict[str, Actor] = field(default_factory=dict)


def _actor(ctx, username: str) -> Actor:
    with ctx.uow() as uow:
        user = uow.session.scalar(sa.select(User).where(User.username == username))
        return auth.actor_for_user(uow.session, user)


def build_world(ctx, n: int = 6, *, emails: bool = True, prefix: str = "") -> World:
    now = ctx.now()
    p = prefix
    with ctx.uow() as uow:
        s = uow.session
        city = add_unit(s, kind=UnitKind.CITY, name="盘锦市", code=f"{p}c", parent=None, now=now)
        county = add_unit(s, kind=UnitKind.COUNTY, name="兴隆台区", code=f"{p}c1", parent=city, now=now)
        county2 = add_unit(s, kind=UnitKind.COUNTY, name="大洼区", code=f"{p}c2", parent=city, now=now)
        school = add_unit(s, kind=UnitKind.SCHOOL, name="第一中学", code=f"{p}c1s1", parent=county, now=now,
                          stage="junior")
        school2 = add_unit(s, kind=UnitKind.SCHOOL, name="第二中学", code=f"{p}c1s2", parent=county, now=now,
                           stage="junior")
        school3 = add_unit(s, kind=UnitKind.SCHOOL, name="大洼中学", code=f"{p}c2s1", parent=county2, now=now,
                           stage="junior")
        units = {}
        for key, sch in (("g", school), ("g2", school2), ("g3", school3)):
            grade = add_unit(s, kind=UnitKind.GRADE, name="七年级", code=f"{p}{sch.code}{key}7", parent=sch, now=now,
                             grade_level=7)
            units[key] = grade
        klass = add_unit(s, kind=UnitKind.CLASS, name="七年级1班", code=f"{p}k1", parent=units["g"], now=now,
                         grade_level=7)
        klass2 = add_unit(s, kind=UnitKind.CLASS, name="七年级2班", code=f"{p}k2", parent=units["g"], now=now,
                          grade_level=7)
        klass_other = add_unit(s, kind=UnitKind.CLASS, name="七年级1班", code=f"{p}k3", parent=units["g2"], now=now,
                               grade_level=7)
        klass3 = add_unit(s, kind=UnitKind.CLASS, name="七年级1班", code=f"{p}k4", parent=units["g3"], now=now,
                          grade_level=7)
        year = students.ensure_academic_year(s, "2026-2027", date(2026, 9, 1), date(2027, 7, 15))
        s.flush()
        w = World(city, county, school, klass, klass2, school2, klass_other, county2, school3, klass3)
        for target, cls in ((w.students, klass), (w.students2, klass2), (w.students_other, klass_other),
                            (w.students3, klass3)):
            items = [students.StudentIn(name=f"学生{cls.code}-{i}", sex="F" if i % 2 else "M", birth_year=2013,
                                        class_unit=cls) for i in range(n)]
            target.extend(students.add_students_bulk(ctx, s, items, year, now))
        uow.commit()
    users = [
        ("monitor", Role.CLASS_MONITOR, klass.id, w.students[0]),
        ("head", Role.HEAD_TEACHER, klass.id, None),
        ("head2", Role.HEAD_TEACHER, klass2.id, None),
        ("counsellor", Role.COUNSELLOR, school.id, None),
        ("leader", Role.SCHOOL_LEADER, school.id, None),
        ("counsellor2", Role.COUNSELLOR, school2.id, None),
        ("county", Role.COUNTY_OFFICER, county.id, None),
        ("county2", Role.COUNTY_OFFICER, county2.id, None),
        ("city", Role.CITY_OFFICER, city.id, None),
        ("admin", Role.SYSADMIN, None, None),
    ]
    for key, role, unit_id, student_id in users:
        name = f"{p}t.{key}"
        auth.create_user(ctx, SYSTEM, username=name, password=PASSWORD, role=role, unit_id=unit_id,
                         email=f"{name}@school.example" if emails and role != Role.CLASS_MONITOR else None,
                         student_id=student_id)
        w.actors[key] = _actor(ctx, name)
    return w


def light_hashes(monkeypatch) -> None:
    """Real argon2id with light parameters so building users stays fast on 2 cores."""
    from argon2 import PasswordHasher

    from mh_platform.services import passwords

    monkeypatch.setattr(passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture(autouse=True)
def quick_hashes(monkeypatch) -> None:
    """Import into a test module (``from flags_world import quick_hashes``): light argon2 for it."""
    light_hashes(monkeypatch)


@pytest.fixture
def world(ctx) -> World:
    """The flags test city (import into a test module with ``from flags_world import world``)."""
    return build_world(ctx)


def stored_phq9(ctx, s, student_id, school_id, answers: dict, name: str, *, at=None, status: str = "open"):
    """A submitted, scored PHQ-9 response in a campaign of its own (as the campaigns area stores it),
    in the session ``s``; returns (response, score result). ``at``: when (default now)."""
    from datetime import timedelta

    from mh_platform.core.instruments import load_instrument
    from mh_platform.core.scoring import score
    from mh_platform.db.models import AcademicYear, Campaign, Response

    result = score(load_instrument("phq9"), answers)
    at = at or ctx.now()
    year = s.scalar(sa.select(AcademicYear))
    camp = Campaign(name=name, academic_year_id=year.id, owner_unit_id=school_id, grades=[7],
                    battery={"junior": ["phq9"]}, opens_at=at, closes_at=at + timedelta(days=3),
                    status=status, created_at=at)
    s.add(camp)
    s.flush()
    resp = Response(campaign_id=camp.id, student_id=student_id, school_unit_id=school_id, instrument_id="phq9",
                    instrument_version=result.instrument_version, status="submitted", n_answered=9,
                    started_at=at, updated_at=at, submitted_at=at,
                    total=None if result.total is None else float(result.total), score_status=result.status,
                    band_id=result.band.id if result.band else None, scored_at=at)
    s.add(resp)
    s.flush()
    return resp, result


def flag_phq9(ctx, student_id, school_id, answers: dict, name: str, *, at=None, status: str = "open"):
    """``stored_phq9`` through the real flag path (``flags.raise_from_response``), committed; returns
    the flag path's outcome."""
    from mh_platform.services import flags

    with ctx.uow() as uow:
        s = uow.session
        resp, result = stored_phq9(ctx, s, student_id, school_id, answers, name, at=at, status=status)
        out = flags.raise_from_response(ctx, s, resp, result, now=ctx.now())
        uow.commit()
    return out
