"""A small real city for the case/referral tests, built through the services.

City → county A (school A: two classes; school A2) and county B (school B). One user per role and
unit that the tests need, a second counsellor at school A, a second city officer, two partner
institutions (made by the city officer) with one clinician each. ``confirmed_flag`` writes a flag
in status ``assessed`` (what the counsellor's interview leaves) as test data.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date

import pytest
import sqlalchemy as sa

from mh_platform.core.types import Role, UnitKind
from mh_platform.db.models import Flag, OrgUnit, User
from mh_platform.services import auth, institutions, students
from mh_platform.services.context import SYSTEM, Actor
from mh_platform.services.org import add_unit

PASSWORD = "correct horse 1"


@dataclass
class CaseWorld:
    city: OrgUnit
    county_a: OrgUnit
    county_b: OrgUnit
    school_a: OrgUnit
    school_a2: OrgUnit
    school_b: OrgUnit
    class_a: OrgUnit
    class_a2: OrgUnit
    class_b: OrgUnit
    year_id: uuid.UUID
    inst1: uuid.UUID
    inst2: uuid.UUID
    students: list[uuid.UUID] = field(default_factory=list)  # in class_a
    student_a2: uuid.UUID | None = None
    student_b: uuid.UUID | None = None
    actors: dict[str, Actor] = field(default_factory=dict)
    user_ids: dict[str, uuid.UUID] = field(default_factory=dict)


def actor_of(ctx, username: str) -> Actor:
    with ctx.uow() as uow:
        user = uow.session.scalar(sa.select(User).where(User.username == username))
        return auth.actor_for_user(uow.session, user)


def build(ctx, *, n: int = 4) -> CaseWorld:
    now = ctx.now()
    with ctx.uow() as uow:
        s = uow.session
        city = add_unit(s, kind=UnitKind.CITY, name="盘锦市", code="cw", parent=None, now=now)
        ca = add_unit(s, kind=UnitKind.COUNTY, name="兴隆台区", code="cw-a", parent=city, now=now)
        cb = add_unit(s, kind=UnitKind.COUNTY, name="大洼区", code="cw-b", parent=city, now=now)
        sa_ = add_unit(s, kind=UnitKind.SCHOOL, name="兴隆台实验中学", code="cw-a-s1", parent=ca, now=now, stage="junior")
        sa2 = add_unit(s, kind=UnitKind.SCHOOL, name="兴隆台第二中学", code="cw-a-s2", parent=ca, now=now, stage="junior")
        sb = add_unit(s, kind=UnitKind.SCHOOL, name="大洼育才中学", code="cw-b-s1", parent=cb, now=now, stage="junior")
        units = {}
        for key, school in (("a", sa_), ("a2", sa2), ("b", sb)):
            g = add_unit(s, kind=UnitKind.GRADE, name="八年级", code=f"{school.code}-g8", parent=school, now=now,
                         grade_level=8)
            units[key] = add_unit(s, kind=UnitKind.CLASS, name="八年级1班", code=f"{school.code}-g8c1", parent=g,
                                  now=now, grade_level=8)
        year = students.ensure_academic_year(s, "2026-2027", date(2026, 9, 1), date(2027, 7, 15))
        ids = []
        for i in range(n):
            st = students.add_student(ctx, s, name=f"学生甲{i}", sex="F" if i % 2 else "M", birth_year=2012,
                                      class_unit=units["a"], year=year, now=now)
            ids.append(st.id)
        a2 = students.add_student(ctx, s, name="学生乙", sex="F", birth_year=2012, class_unit=units["a2"], year=year,
                                  now=now)
        b = students.add_student(ctx, s, name="学生丙", sex="M", birth_year=2012, class_unit=units["b"], year=year,
                                 now=now)
        uow.commit()
    w = CaseWorld(city, ca, cb, sa_, sa2, sb, units["a"], units["a2"], units["b"], year.id, uuid.uuid4(),
                  uuid.uuid4(), ids, a2.id, b.id)
    plan = [("counsellor.a", Role.COUNSELLOR, sa_), ("counsellor.a.two", Role.COUNSELLOR, sa_),
            ("leader.a", Role.SCHOOL_LEADER, sa_), ("teacher.a", Role.HEAD_TEACHER, units["a"]),
            ("counsellor.a2", Role.COUNSELLOR, sa2), ("counsellor.b", Role.COUNSELLOR, sb),
            ("county.a", Role.COUNTY_OFFICER, ca), ("county.a.two", Role.COUNTY_OFFICER, ca),
            ("county.b", Role.COUNTY_OFFICER, cb), ("city", Role.CITY_OFFICER, city),
            ("city.two", Role.CITY_OFFICER, city), ("admin", Role.SYSADMIN, None)]
    for username, role, unit in plan:
        w.user_ids[username] = auth.create_user(ctx, SYSTEM, username=username, password=PASSWORD, role=role,
                                                unit_id=unit.id if unit else None,
                                                email=f"{username}@example.test")
        w.actors[username] = actor_of(ctx, username)
    city_actor = w.actors["city"]
    w.inst1 = institutions.create_institution(ctx, city_actor, name="盘锦市精神卫生中心", code="cw-pjmh")
    w.inst2 = institutions.create_institution(ctx, city_actor, name="辽河油田总医院心理科", code="cw-lhyt")
    for username, inst in (("clinician.one", w.inst1), ("clinician.two", w.inst2)):
        w.user_ids[username] = institutions.add_clinician(ctx, city_actor, inst, username=username, password=PASSWORD,
                                                          email=f"{username}@example.test")
        w.actors[username] = actor_of(ctx, username)
    return w


def confirmed_flag(ctx, student_id: uuid.UUID, level: str = "red", status: str = "assessed") -> uuid.UUID:
    """A flag the counsellor confirmed by interview (test data for opening a case)."""
    from mh_platform.services.access import current_enrolment

    now = ctx.now()
    with ctx.uow() as uow:
        s = uow.session
        e = current_enrolment(s, student_id)
        f = Flag(id=uuid.uuid4(), student_id=student_id, school_unit_id=e.school_unit_id, class_unit_id=e.class_unit_id,
                 unit_path=e.unit_path, level=level, tier="school", status=status, opened_at=now, tier_entered_at=now,
                 acknowledged_at=now, version=1)
        s.add(f)
        uow.commit()
        return f.id


def api_world(ctx) -> tuple[CaseWorld, dict[str, list]]:
    """The world the API checks address (T14: the schemathesis test and ``scripts/dast.py``): the
    cases world of three students plus a class monitor (``monitor.a``), and one real object of each
    kind the API names — a concern's flag, a confirmed red flag with its case and a submitted referral.
    Returns the world and the real ids by path parameter."""
    from mh_platform.services import cases, concerns, referrals

    w = build(ctx, n=3)
    w.user_ids["monitor.a"] = auth.create_user(ctx, SYSTEM, username="monitor.a", password=PASSWORD,
                                               role=Role.CLASS_MONITOR, unit_id=w.class_a.id,
                                               student_id=w.students[2])
    c = w.actors["counsellor.a"]
    raised = concerns.submit_concern(ctx, w.actors["teacher.a"], student_id=w.students[1], category="mood",
                                     urgency="soon", note="上课走神")["flag_id"]
    assessed = confirmed_flag(ctx, w.students[0], "red")
    case_id = cases.open_case(ctx, c, assessed, summary="摘要")
    rid = referrals.create_referral(ctx, c, case_id, institution_id=w.inst1, reason="转介原因")
    referrals.transition(ctx, c, rid, "submit", consent="guardian")
    return w, {"student_id": [w.students[0], w.students[2], w.student_b],
               "flag_id": [uuid.UUID(str(raised)), assessed], "case_id": [case_id], "referral_id": [rid],
               "institution_id": [w.inst1, w.inst2]}


@pytest.fixture(autouse=True)
def quick_argon2(monkeypatch):
    """Real argon2id, light parameters (nothing here tests hash strength); import into a test module."""
    from flags_world import light_hashes

    light_hashes(monkeypatch)
