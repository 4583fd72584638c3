"""Shared set-up for the screening tests: a small city, staff accounts and roster files."""

from __future__ import annotations

import csv
import io
import uuid
from dataclasses import dataclass
from datetime import date

import pytest
import sqlalchemy as sa

from mh_platform.core.types import Role, UnitKind
from mh_platform.db.models import OrgUnit, User
from mh_platform.services import auth, students
from mh_platform.services.context import SYSTEM, Actor, ServiceContext
from mh_platform.services.org import add_unit

HEADER = ["学校", "年级", "班级", "学籍号", "姓名", "性别", "出生年份", "监护人姓名", "监护人关系", "监护人电话"]
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
GIVEN = "伟芳娜敏静强磊军洋勇艳杰娟涛明超秀霞平刚"


@dataclass
class World:
    city: OrgUnit
    county: OrgUnit
    school: OrgUnit
    other_school: OrgUnit
    counsellor: Actor
    county_officer: Actor
    city_officer: Actor
    other_counsellor: Actor


def actor(ctx: ServiceContext, user_id: uuid.UUID) -> Actor:
    with ctx.uow() as uow:
        u = uow.session.get(User, user_id)
        return auth.actor_for_user(uow.session, u)


def make_user(ctx: ServiceContext, username: str, role: Role, unit_id: uuid.UUID) -> Actor:
    uid = auth.create_user(ctx, SYSTEM, username=username, password="correct horse 1", role=role, unit_id=unit_id)
    return actor(ctx, uid)


def build_world(ctx: ServiceContext) -> World:
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        city = add_unit(s, kind=UnitKind.CITY, name="盘锦市", code="pj", parent=None, now=now)
        county = add_unit(s, kind=UnitKind.COUNTY, name="兴隆台区", code="xlt", parent=city, now=now)
        county2 = add_unit(s, kind=UnitKind.COUNTY, name="大洼区", code="dw", parent=city, now=now)
        school = add_unit(s, kind=UnitKind.SCHOOL, name="兴隆台第一中学", code="xlt-s001", parent=county, now=now,
                          stage="junior")
        other = add_unit(s, kind=UnitKind.SCHOOL, name="大洼实验中学", code="dw-s001", parent=county2, now=now,
                         stage="junior")
        students.ensure_academic_year(s, "2026-2027", date(2026, 9, 1), date(2027, 7, 15))
        uow.commit()
    return World(city, county, school, other,
                 make_user(ctx, "t.counsellor", Role.COUNSELLOR, school.id),
                 make_user(ctx, "t.county", Role.COUNTY_OFFICER, county.id),
                 make_user(ctx, "t.city", Role.CITY_OFFICER, city.id),
                 make_user(ctx, "t.other", Role.COUNSELLOR, other.id))


def roster_rows(school_code: str = "xlt-s001", classes: int = 2, per_class: int = 25, grade: str = "七年级",
                start: int = 0, birth_year: int = 2013) -> list[list[str]]:
    rows = []
    k = start
    for c in range(1, classes + 1):
        for _ in range(per_class):
            name = SURNAMES[k % len(SURNAMES)] + GIVEN[(k * 7) % len(GIVEN)] + GIVEN[(k * 3 + 1) % len(GIVEN)]
            rows.append([school_code, grade, f"{c}班", f"G2100{k:08d}", name, "男" if k % 2 else "女", str(birth_year),
                         name[0] + "家长", "母亲" if k % 3 else "父亲", f"139{k:08d}"])
            k += 1
    return rows


def to_csv(rows: list[list[str]], header: list[str] = HEADER, encoding: str = "utf-8", bom: bool = False) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(header)
    w.writerows(rows)
    data = buf.getvalue().encode(encoding)
    return (b"\xef\xbb\xbf" + data) if bom else data


def to_xlsx(rows: list[list[str]], header: list[str] = HEADER) -> bytes:
    import openpyxl

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(header)
    for r in rows:
        ws.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def class_units(ctx: ServiceContext, school: OrgUnit) -> list[OrgUnit]:
    from mh_platform.services.org import under

    with ctx.uow() as uow:
        out = list(uow.session.scalars(sa.select(OrgUnit).where(OrgUnit.kind == "class", under(OrgUnit.path, school.path))
                                       .order_by(OrgUnit.name)))
        uow.commit()  # nothing written; keeps the loaded rows readable after the session closes
        return out


def screening_ready(ctx: ServiceContext, world: World, *, classes: int = 1, per_class: int = 6, refused: int = 1,
                    grade: str = "七年级", birth_year: int = 2013):
    """Roster imported, consents recorded (the last ``refused`` of each class refuse), a campaign for
    the school open now, codes issued. Returns (campaign_id, {student_id: code}, refused_ids, head_teachers)."""
    from datetime import timedelta

    from mh_platform.db.models import Enrolment
    from mh_platform.services import campaigns, consent, roster

    roster.commit(ctx, world.counsellor, to_csv(roster_rows(classes=classes, per_class=per_class, grade=grade,
                                                            birth_year=birth_year)), "r.csv")
    hts, refused_ids = [], []
    for i, cls in enumerate(class_units(ctx, world.school)):
        ht = make_user(ctx, f"t.ht{i + 1}", Role.HEAD_TEACHER, cls.id)
        hts.append(ht)
        with ctx.uow() as uow:
            ids = list(uow.session.scalars(sa.select(Enrolment.student_id).where(Enrolment.class_unit_id == cls.id)
                                           .order_by(Enrolment.student_id)))
        items = [consent.ConsentIn(sid, "granted" if j < len(ids) - refused else "refused") for j, sid in enumerate(ids)]
        consent.record_many(ctx, ht, items)
        refused_ids += ids[len(ids) - refused:]
    grade_level = {"七年级": 7, "四年级": 4, "五年级": 5}.get(grade, 7)
    now = ctx.now()
    cid = campaigns.create(ctx, world.counsellor, name="普测", unit_ids=[world.school.id], grades=[grade_level],
                           opens_at=now - timedelta(minutes=1), closes_at=now + timedelta(days=3))
    campaigns.open_due(ctx, now)
    codes = campaigns.issue_codes_system(ctx, cid)
    return cid, codes, refused_ids, hts


# Fixtures shared by the screening tests: import them into a test module
# (``from screening_world import app, quick_argon2, ready``).


@pytest.fixture(autouse=True)
def quick_argon2(monkeypatch) -> None:
    """Real argon2id with light parameters (nothing here tests hash strength)."""
    from flags_world import light_hashes

    light_hashes(monkeypatch)


@pytest.fixture
def ready(ctx) -> tuple:
    """The screening city with a campaign ready: (world, campaign id, codes, refused, head teachers)."""
    world = build_world(ctx)
    return world, *screening_ready(ctx, world, per_class=4, refused=1)


@pytest.fixture
def app(ctx):
    """The Flask app on the test context, rate limits reset."""
    from mh_platform.web.app import create_app
    from mh_platform.web.extensions import limiter

    app = create_app(ctx=ctx, extra_config={"TESTING": True, "MHP_PROPAGATE_ERRORS": True})
    limiter.reset()
    return app
