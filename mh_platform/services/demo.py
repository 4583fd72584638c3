"""The demo city: a synthetic prefecture-level city (no real people) for `mhp demo seed`.

Five counties/districts, primary, junior and senior schools with grades and classes, students
with generated Chinese names, guardians, two partner institutions, and one demo account per role
per kind of unit. Area modules add screening, flags and cases through their own ``seed`` hooks
(``services.demo_screening``, ``services.demo_flags``, ``services.demo_cases``) when present.
"""

from __future__ import annotations

import importlib
import random
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core.types import Role, UnitKind
from mh_platform.db.models import Institution, OrgUnit, Student, User
from mh_platform.services import audit, auth, students
from mh_platform.services.context import SYSTEM, ServiceContext
from mh_platform.services.org import add_unit

CITY = ("盘锦市", "pj")
COUNTIES = [("兴隆台区", "xlt"), ("双台子区", "stz"), ("大洼区", "dw"), ("盘山县", "ps"), ("辽河油田", "lhyt")]
STAGES = {"primary": (range(1, 7), "小学"), "junior": (range(7, 10), "中学"), "senior": (range(10, 13), "高级中学")}
GRADE_NAMES = {1: "一年级", 2: "二年级", 3: "三年级", 4: "四年级", 5: "五年级", 6: "六年级", 7: "七年级",
               8: "八年级", 9: "九年级", 10: "高一", 11: "高二", 12: "高三"}
SCHOOL_WORDS = ["实验", "第一", "第二", "第三", "育才", "曙光", "新兴", "光明", "友谊", "胜利", "振兴", "辽河",
                "红旗", "向阳", "东风", "朝阳", "和平", "建设", "春蕾", "启航"]
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋蔡贾丁魏薛叶阎余潘杜戴夏钟汪田任姜范方石姚谭廖邹熊金陆郝孔白崔康毛邱秦江史顾侯邵孟龙万段雷钱汤尹黎易常武乔贺赖龚文"
GIVEN_F = "芳娜敏静丽艳娟霞婷雪琳晶妍欣怡佳悦涵萱雨瑶梦诗琪璐"
GIVEN_M = "伟强磊军勇杰涛明超刚平辉鹏华飞鑫波斌宇浩凯健俊帆晨阳博"
GIVEN_ANY = "子一文思嘉梓若可天书心语安乐晓云海"
INSTITUTIONS = [("盘锦市精神卫生中心", "inst-pjmh"), ("辽河油田总医院心理科", "inst-lhyt")]
DEFAULT_PASSWORD = "Demo-2026-pass"  # noqa: S105 - demo only; printed by `mhp demo accounts`


@dataclass
class DemoCity:
    """What the base seed created, for the area hooks."""

    city: OrgUnit
    counties: list[OrgUnit]
    schools: list[OrgUnit]
    classes: list[OrgUnit]
    year_id: uuid.UUID
    student_ids: list[uuid.UUID]
    institutions: list[Institution]
    accounts: list[dict] = field(default_factory=list)
    # Schools that get screening activity: the demo accounts' schools and the first 12. A large city
    # (--students 200000, for benchmarks) keeps the same amount of activity, so seeding stays bounded.
    active_school_ids: set[uuid.UUID] = field(default_factory=set)


def chinese_name(rng: random.Random, sex: str) -> str:
    given = GIVEN_F if sex == "F" else GIVEN_M
    n = rng.choice((1, 2, 2))
    chars = [rng.choice(given)] if n == 1 else [rng.choice(GIVEN_ANY + given), rng.choice(given)]
    return rng.choice(SURNAMES) + "".join(chars)


def is_empty(ctx: ServiceContext) -> bool:
    with ctx.uow() as uow:
        return uow.session.scalar(sa.select(sa.func.count()).select_from(OrgUnit)) == 0


def _school_plan(n_students: int, rng: random.Random) -> list[tuple[int, str]]:
    """(county index, stage) per school: about 1,000 students a school, 12 to 250 schools."""
    n_schools = max(12, min(250, round(n_students / 330) if n_students <= 4000 else n_students // 1000))
    stages = ["primary", "junior", "senior"]
    return [(i % len(COUNTIES), stages[(i // len(COUNTIES)) % 3] if i >= 3 else stages[i]) for i in range(n_schools)]


def seed_city(ctx: ServiceContext, *, n_students: int = 4000, seed: int = 2026,
              password: str = DEFAULT_PASSWORD) -> DemoCity:
    """Create the base city in one transaction (refuses a non-empty database)."""
    rng = random.Random(seed)
    now = ctx.now()
    year_start = date(now.year if now.month >= 8 else now.year - 1, 9, 1)
    with ctx.uow() as uow:
        s = uow.session
        if s.scalar(sa.select(sa.func.count()).select_from(OrgUnit)):
            raise RuntimeError("the database already has org units; demo seed needs an empty database")
        year = students.ensure_academic_year(s, f"{year_start.year}-{year_start.year + 1}", year_start,
                                             date(year_start.year + 1, 7, 15))
        city = add_unit(s, kind=UnitKind.CITY, name=CITY[0], code=CITY[1], parent=None, now=now)
        counties = [add_unit(s, kind=UnitKind.COUNTY, name=n, code=c, parent=city, now=now) for n, c in COUNTIES]
        plan = _school_plan(n_students, rng)
        per_school = max(40, n_students // len(plan))
        schools, classes, class_stage = [], [], {}
        for i, (ci, stage) in enumerate(plan):
            county = counties[ci]
            grades, suffix = STAGES[stage]
            word = SCHOOL_WORDS[i % len(SCHOOL_WORDS)]
            name = f"{county.name[:2]}{word}{suffix}" + (f"{i // len(SCHOOL_WORDS) + 1}校" if i >= len(SCHOOL_WORDS) else "")
            school = add_unit(s, kind=UnitKind.SCHOOL, name=name, code=f"{county.code}-s{i + 1:03d}", parent=county,
                              now=now, stage=stage)
            schools.append(school)
            n_classes = max(len(grades), round(per_school / 40))
            per_grade = max(1, n_classes // len(grades))
            for g in grades:
                grade = add_unit(s, kind=UnitKind.GRADE, name=GRADE_NAMES[g], code=f"{school.code}-g{g}",
                                 parent=school, now=now, grade_level=g)
                for k in range(per_grade):
                    c = add_unit(s, kind=UnitKind.CLASS, name=f"{GRADE_NAMES[g]}{k + 1}班",
                                 code=f"{school.code}-g{g}c{k + 1}", parent=grade, now=now, grade_level=g)
                    classes.append(c)
                    class_stage[c.id] = stage
        s.flush()
        # students, spread evenly over classes
        student_ids: list[uuid.UUID] = []
        batch: list[students.StudentIn] = []
        for i in range(n_students):
            c = classes[i % len(classes)]
            sex = "F" if rng.random() < 0.49 else "M"
            name = chinese_name(rng, sex)
            guardian = students.GuardianIn(name[0] + rng.choice("建国志强秀英桂兰玉梅"), rng.choice(["father", "mother"]),
                                           f"13{rng.randrange(10**8, 10**9)}")
            batch.append(students.StudentIn(name=name, sex=sex, birth_year=year_start.year - (c.grade_level or 1) - 6,
                                            class_unit=c, student_number=f"G{rng.randrange(10**17, 10**18)}",
                                            guardians=(guardian,)))
            if len(batch) == 2000 or i == n_students - 1:
                student_ids += students.add_students_bulk(ctx, s, batch, year, now)
                batch = []
        institutions = []
        for name, code in INSTITUTIONS:
            inst = Institution(name=name, code=code, city_unit_id=city.id, active=True, created_at=now)
            s.add(inst)
            institutions.append(inst)
        audit.record(ctx, s, SYSTEM, "demo:seeded", "org_unit", city.id, {"students": n_students, "seed": seed})
        uow.commit()
    demo = DemoCity(city, counties, schools, classes, year.id, student_ids, institutions)
    demo.accounts = _seed_accounts(ctx, demo, class_stage, password)
    demo.active_school_ids = {sc.id for sc in schools[:12]} | {
        next(sc.id for sc in schools if sc.stage == stage) for stage in ("primary", "junior", "senior")}
    return demo


def _seed_accounts(ctx: ServiceContext, demo: DemoCity, class_stage: dict, password: str) -> list[dict]:
    """One account per role per kind of unit; monitors are students of the demo classes."""
    accounts: list[dict] = []

    def make(username: str, role: Role, unit: OrgUnit | None = None, inst: Institution | None = None,
             student_id: uuid.UUID | None = None, display: str = "") -> None:
        auth.create_user(ctx, SYSTEM, username=username, password=password, role=role,
                         unit_id=unit.id if unit else None, institution_id=inst.id if inst else None,
                         display_name=display or username, student_id=student_id)
        accounts.append({"username": username, "role": role.value,
                         "unit": (unit.name if unit else inst.name if inst else "—")})

    make("admin", Role.SYSADMIN, display="系统管理员")
    make("city.officer", Role.CITY_OFFICER, demo.city, display="市教育局心理健康负责人")
    for county in demo.counties:
        make(f"county.{county.code}", Role.COUNTY_OFFICER, county, display=f"{county.name}教育局")
    for stage in ("primary", "junior", "senior"):
        school = next(sc for sc in demo.schools if sc.stage == stage)
        make(f"counsellor.{stage}", Role.COUNSELLOR, school, display=f"{school.name}心理教师")
        make(f"leader.{stage}", Role.SCHOOL_LEADER, school, display=f"{school.name}分管校长")
        cls = next(c for c in demo.classes if c.path.startswith(school.path) and class_stage[c.id] == stage)
        make(f"teacher.{stage}", Role.HEAD_TEACHER, cls, display=f"{cls.name}班主任")
        with ctx.uow() as uow:
            monitor_student = uow.session.scalar(
                sa.select(Student.id).join(students.Enrolment, students.Enrolment.student_id == Student.id)
                .where(students.Enrolment.class_unit_id == cls.id).order_by(Student.pseudonym).limit(1))
        make(f"monitor.{stage}", Role.CLASS_MONITOR, cls, student_id=monitor_student, display=f"{cls.name}心理委员")
    for inst in demo.institutions:
        make(f"clinician.{inst.code.removeprefix('inst-')}", Role.CLINICIAN, inst=inst, display=f"{inst.name}医生")
    return accounts


AREA_HOOKS = ("mh_platform.services.demo_screening", "mh_platform.services.demo_flags",
              "mh_platform.services.demo_cases")


def seed(ctx: ServiceContext, *, n_students: int = 4000, seed: int = 2026, password: str = DEFAULT_PASSWORD) -> dict:
    """The whole demo: base city, then each area's hook that exists. Returns a summary."""
    t0 = datetime.now()
    demo = seed_city(ctx, n_students=n_students, seed=seed, password=password)
    done: list[str] = []
    for mod_name in AREA_HOOKS:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError:
            continue
        mod.seed(ctx, random.Random(seed + len(done) + 1), ctx.now(), demo)
        done.append(mod_name.rsplit(".", 1)[1])
    return {"students": len(demo.student_ids), "schools": len(demo.schools), "classes": len(demo.classes),
            "accounts": len(demo.accounts), "areas": done, "seconds": round((datetime.now() - t0).total_seconds(), 1)}


def list_accounts(ctx: ServiceContext) -> list[dict]:
    """Every account with role and unit name (for `mhp demo accounts`)."""
    from mh_platform.db.models import RoleAssignment

    with ctx.uow() as uow:
        s: Session = uow.session
        rows = s.execute(sa.select(User.username, RoleAssignment.role, OrgUnit.name, Institution.name)
                         .join(RoleAssignment, RoleAssignment.user_id == User.id)
                         .outerjoin(OrgUnit, OrgUnit.id == RoleAssignment.unit_id)
                         .outerjoin(Institution, Institution.id == RoleAssignment.institution_id)
                         .order_by(User.created_at, User.username)).all()
    return [{"username": u, "role": r, "unit": un or inn or "—"} for u, r, un, inn in rows]


