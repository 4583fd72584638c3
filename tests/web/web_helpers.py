"""Helpers for the web tests: a small city built through the services, and client helpers.

City: 2 counties × 2 schools × 2 grades × 2 classes × 2 students (32 students). The "home" branch
is county 0 / school 0 / grade 0 / class 0; the users sit there (the city officer at the city, the
clinician at a partner institution, the sysadmin nowhere).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date

from mh_platform.core.types import Role, UnitKind
from mh_platform.db.models import Institution, OrgUnit
from mh_platform.services import auth, students
from mh_platform.services.context import SYSTEM
from mh_platform.services.org import add_unit

PASSWORD = "correct horse battery 1"
CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@dataclass
class City:
    city: OrgUnit
    counties: list[OrgUnit] = field(default_factory=list)
    schools: list[OrgUnit] = field(default_factory=list)
    classes: list[OrgUnit] = field(default_factory=list)
    # student id -> (name, class unit, school unit, county unit)
    students: dict[uuid.UUID, tuple[str, OrgUnit, OrgUnit, OrgUnit]] = field(default_factory=dict)
    users: dict[Role, str] = field(default_factory=dict)  # role -> username
    user_ids: dict[Role, uuid.UUID] = field(default_factory=dict)
    home_class: OrgUnit | None = None
    home_school: OrgUnit | None = None
    home_county: OrgUnit | None = None
    institution: Institution | None = None

    def ids_where(self, pred) -> set[uuid.UUID]:  # noqa: ANN001
        return {sid for sid, (_n, c, s, k) in self.students.items() if pred(c, s, k)}

    def expected_scope(self, role: Role) -> set[uuid.UUID]:
        """What each role must see in the student list, written from the design, not from the code."""
        if role in (Role.CLASS_MONITOR, Role.HEAD_TEACHER):
            return self.ids_where(lambda c, s, k: c.id == self.home_class.id)
        if role in (Role.COUNSELLOR, Role.SCHOOL_LEADER):
            return self.ids_where(lambda c, s, k: s.id == self.home_school.id)
        return set()  # county/city officers: aggregates only; clinician: referrals only; sysadmin: nothing


def build_city(ctx, *, with_users: bool = True, roles: tuple[Role, ...] | None = None) -> City:
    now = ctx.now()
    counter = iter(range(10_000))
    with ctx.uow() as uow:
        s = uow.session
        city_unit = add_unit(s, kind=UnitKind.CITY, name="盘锦市", code="t-city", parent=None, now=now)
        city = City(city=city_unit)
        year = students.ensure_academic_year(s, "2026-2027", date(2026, 9, 1), date(2027, 7, 15))
        for ci, cname in enumerate(["兴隆台区", "双台子区"]):
            county = add_unit(s, kind=UnitKind.COUNTY, name=cname, code=f"t-k{ci}", parent=city_unit, now=now)
            city.counties.append(county)
            for si in range(2):
                school = add_unit(s, kind=UnitKind.SCHOOL, name=f"{cname}第{si + 1}中学", code=f"t-k{ci}s{si}",
                                  parent=county, now=now, stage="junior")
                city.schools.append(school)
                for gi, level in enumerate((7, 8)):
                    grade = add_unit(s, kind=UnitKind.GRADE, name=f"{level}年级", code=f"t-k{ci}s{si}g{gi}",
                                     parent=school, now=now, grade_level=level)
                    for ki in range(2):
                        cls = add_unit(s, kind=UnitKind.CLASS, name=f"{level}年级{ki + 1}班",
                                       code=f"t-k{ci}s{si}g{gi}c{ki}", parent=grade, now=now, grade_level=level)
                        city.classes.append(cls)
                        s.flush()
                        for _ in range(2):
                            n = next(counter)
                            name = f"学生{n:03d}号"
                            st = students.add_student(ctx, s, name=name, sex="F" if n % 2 else "M",
                                                      birth_year=2013, class_unit=cls, year=year, now=now,
                                                      student_number=f"SN{n:06d}")
                            city.students[st.id] = (name, cls, school, county)
                        if (ci, si, gi, ki) == (0, 0, 0, 0):
                            city.home_class, city.home_school, city.home_county = cls, school, county
        inst = Institution(name="盘锦市精神卫生中心", code="t-inst", city_unit_id=city_unit.id, created_at=now)
        s.add(inst)
        s.flush()
        city.institution = inst
        uow.commit()
    if with_users:
        monitor_student = next(sid for sid, v in city.students.items() if v[1].id == city.home_class.id)
        unit_of = {
            Role.CLASS_MONITOR: city.home_class.id, Role.HEAD_TEACHER: city.home_class.id,
            Role.COUNSELLOR: city.home_school.id, Role.SCHOOL_LEADER: city.home_school.id,
            Role.COUNTY_OFFICER: city.home_county.id, Role.CITY_OFFICER: city.city.id,
            Role.CLINICIAN: None, Role.SYSADMIN: None,
        }
        for role in roles or tuple(Role):
            username = f"t.{role.value.replace('_', '')}"
            uid = auth.create_user(ctx, SYSTEM, username=username, password=PASSWORD, role=role,
                                   unit_id=unit_of[role],
                                   institution_id=inst.id if role == Role.CLINICIAN else None,
                                   student_id=monitor_student if role == Role.CLASS_MONITOR else None)
            city.users[role] = username
            city.user_ids[role] = uid
    return city


def csrf_token(client, path: str = "/login") -> str:
    html = client.get(path).get_data(as_text=True)
    m = CSRF_RE.search(html)
    assert m, f"no CSRF token on {path}"
    return m.group(1)


def login(client, username: str, password: str = PASSWORD, follow: bool = False):
    token = csrf_token(client)
    return client.post("/login", data={"username": username, "password": password, "csrf_token": token},
                       follow_redirects=follow)


def api_token(client, username: str, password: str = PASSWORD) -> str:
    r = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert r.status_code == 200, r.get_json()
    return r.get_json()["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def session_cookie(client):
    c = client.get_cookie("mhp_session")
    return c.value if c is not None else None
