"""Demo hook: cases (一生一策) and green-channel referrals in every state, across both partner
institutions, plus a break-glass use waiting for review and a pending handover.

Runs after the base city (and after demo_screening / demo_flags when they exist). Everything goes
through the services, at past times (a context copy with a fixed clock), so the history, audit
chain, deadlines and notices are what real use would have left. Confirmed flags come from the flags
service when it is there; otherwise (or if it refuses) a flag row in status ``assessed`` is written.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mh_platform.core.clock import FixedClock
from mh_platform.core.types import Role
from mh_platform.db.models import Case, Enrolment, Flag, OrgUnit, Student, User
from mh_platform.services import auth, breakglass, cases, referrals, transfers
from mh_platform.services.access import current_enrolment
from mh_platform.services.context import SYSTEM, Actor, ServiceContext

log = logging.getLogger(__name__)
H = timedelta(hours=1)
D = timedelta(days=1)

# (scenario, level, institution index) — one student each, spread over the three demo schools
SCENARIOS: list[tuple[str, str, int]] = [
    ("case_only", "orange", 0), ("draft", "orange", 0), ("overdue_requested", "red", 0),
    ("requested", "red", 1), ("declined", "orange", 0), ("accepted", "red", 1), ("scheduled", "red", 0),
    ("no_show", "orange", 1), ("attended", "red", 0), ("feedback", "red", 1), ("school_follow_up", "orange", 0),
    ("closed", "yellow", 1), ("override", "red", 0), ("transfer", "orange", 1),
]
# How long before "now" each scenario's referral was created, so that at "now" every referral is
# within its deadlines except the one meant to be overdue (the demo's sweep escalates only that one).
REFERRAL_AGE: dict[str, timedelta] = {
    "draft": D, "requested": 3 * H, "override": 3 * H, "overdue_requested": 30 * H, "declined": 7 * H,
    "accepted": 8 * H, "scheduled": 10 * H, "no_show": 44 * H, "attended": 44 * H, "feedback": 3 * D + 2 * H,
    "school_follow_up": 5 * D, "closed": 8 * D,
}


def _actor(ctx: ServiceContext, username: str) -> Actor | None:
    with ctx.uow() as uow:
        user = uow.session.scalar(sa.select(User).where(User.username == username))
        return auth.actor_for_user(uow.session, user) if user else None


def _at(ctx: ServiceContext, t: datetime) -> ServiceContext:
    return dataclasses.replace(ctx, clock=FixedClock(t))


def _students_of(ctx: ServiceContext, school_id: uuid.UUID, n: int) -> list[uuid.UUID]:
    with ctx.uow() as uow:
        has_case = sa.select(Case.id).where(Case.student_id == Student.id).exists()
        return list(uow.session.scalars(
            sa.select(Student.id).join(Enrolment, Enrolment.student_id == Student.id)
            .where(Enrolment.school_unit_id == school_id, Enrolment.active.is_(True), ~has_case)
            .order_by(Student.pseudonym).limit(n)))


def _confirmed_flag(ctx: ServiceContext, counsellor: Actor, student_id: uuid.UUID, level: str) -> uuid.UUID:
    """A flag confirmed by interview: via the flags service if present, else written directly (demo data)."""
    try:
        from mh_platform.core import flag_rules as fr
        from mh_platform.services import flags as flag_service

        with ctx.uow() as uow:
            out = flag_service.open_or_attach_in(
                uow.session, ctx, counsellor, student_id=student_id, now=ctx.now(),
                evidence=[fr.Evidence(fr.EvidenceSource.CONCERN, fr.Level(level), "demo_case")],
                reporter_role=Role.HEAD_TEACHER)
            uow.commit()
        if out is None:
            raise LookupError("no flag")
        flag_service.acknowledge(ctx, counsellor, out.flag_id)
        flag_service.assess(ctx, counsellor, out.flag_id, "confirm")
    except Exception as exc:  # noqa: BLE001 - the demo must seed whatever the flags area can do today
        log.info("demo_cases: flags service unavailable for the demo (%s); writing the flag directly",
                 type(exc).__name__)
    now = ctx.now()
    with ctx.uow() as uow:
        s = uow.session
        flag_service.lock_audit(s)  # as every flag writer, before it reads or opens a flag
        flag = s.scalar(sa.select(Flag).where(Flag.student_id == student_id, Flag.status != "closed"))
        if flag is None:
            e = current_enrolment(s, student_id)
            if e is None:
                raise LookupError("student not enrolled")
            flag = Flag(id=uuid.uuid4(), student_id=student_id, school_unit_id=e.school_unit_id,
                        class_unit_id=e.class_unit_id, unit_path=e.unit_path, level=level, tier="school",
                        status="assessed", opened_at=now, tier_entered_at=now, acknowledged_at=now, version=1)
            s.add(flag)
        elif flag.status not in cases.CONFIRMED_FLAG_STATUSES:
            flag.status, flag.version = "assessed", flag.version + 1
        fid = flag.id
        uow.commit()
        return fid


def seed(ctx: ServiceContext, rng: random.Random, now: datetime, demo: Any) -> dict[str, int]:
    """Seed the demo cases and referrals; returns counts."""
    stages = ("primary", "junior", "senior")
    found = {st: _actor(ctx, f"counsellor.{st}") for st in stages}
    found_cl = [_actor(ctx, "clinician.pjmh"), _actor(ctx, "clinician.lhyt")]
    counsellors = {st: a for st, a in found.items() if a is not None and a.unit_id is not None}
    clinicians = [a for a in found_cl if a is not None and a.institution_id is not None]
    if len(counsellors) != len(stages) or len(clinicians) != 2:
        return {"cases": 0, "referrals": 0}
    insts: list[uuid.UUID] = [c.institution_id for c in clinicians if c.institution_id is not None]
    pools = {st: _students_of(ctx, counsellors[st].unit_id, 8) for st in stages}  # type: ignore[arg-type]
    made = {"cases": 0, "referrals": 0}
    case_ids: dict[str, uuid.UUID] = {}
    for i, (scenario, level, k) in enumerate(SCENARIOS):
        st = stages[i % 3]
        if not pools[st]:
            continue
        c = counsellors[st]
        student = pools[st].pop(0)
        t_ref = now - REFERRAL_AGE.get(scenario, D)
        t0 = t_ref - 4 * D  # the case's own history comes first
        try:
            cid = _scenario(ctx, rng, scenario, level, c, clinicians[k], insts[k], student, t0, t_ref, now, demo)
        except Exception:  # noqa: BLE001 - one scenario failing must not stop the demo
            log.exception("demo_cases: scenario %s failed", scenario)
            continue
        case_ids[scenario] = cid
        made["cases"] += 1
        made["referrals"] += scenario not in ("case_only", "transfer")
    # the overdue red referral is swept now: school → county (and the county officer is notified)
    referrals.sweep(_at(ctx, now), now)
    # a county officer used break-glass on a red case; it waits for a second person's review
    red = case_ids.get("overdue_requested")
    if red is not None:
        with ctx.uow() as uow:
            path = uow.session.scalar(sa.select(Case.unit_path).where(Case.id == red)) or "/"
            county_id = uuid.UUID(path.strip("/").split("/")[1])
            county_code = uow.session.scalar(sa.select(OrgUnit.code).where(OrgUnit.id == county_id))
        officer = _actor(ctx, f"county.{county_code}")
        if officer is not None:
            breakglass.open_break_glass(_at(ctx, now - 2 * H), officer, red,
                                        reason="演示：学生当日未到校且联系不上，需核实安全计划与转介进度")
    return made


def _scenario(ctx: ServiceContext, rng: random.Random, scenario: str, level: str, c: Actor, cl: Actor,
              inst: uuid.UUID, student: uuid.UUID, t0: datetime, t_ref: datetime, now: datetime,
              demo: Any) -> uuid.UUID:
    at = lambda t: _at(ctx, t)  # noqa: E731
    flag = _confirmed_flag(at(t0), c, student, level)
    cid = cases.open_case(at(t0 + H), c, flag, summary="演示个案：访谈复核确认，情绪低落伴睡眠问题，需持续关注。")
    cases.add_plan_item(at(t0 + 2 * H), c, cid, goal="恢复规律作息与上课出勤", action="每周一次个别辅导；班主任每日关注出勤",
                        review_at=now + timedelta(days=rng.randint(2, 10)))
    cases.add_plan_item(at(t0 + 2 * H), c, cid, goal="建立同伴支持", action="安排心理委员与其结对",
                        review_at=now - D)
    fu = cases.schedule_follow_up(at(t0 + 2 * H), c, cid, due_at=t0 + 3 * D)
    cases.complete_follow_up(at(t0 + 3 * D), c, fu, note="演示随访：情绪较前平稳，睡眠改善。")
    cases.schedule_follow_up(at(t0 + 3 * D), c, cid, due_at=now + timedelta(days=rng.randint(-1, 5)))
    cases.log_guardian_contact(at(t0 + 4 * H), c, cid, method="phone", note="演示：与母亲电话沟通，告知学校支持计划。")
    if scenario in ("case_only",):
        return cid
    if scenario == "transfer":
        _transfer(ctx, c, cid, student, now, demo)
        return cid
    t = t_ref  # "overdue_requested": requested 30 h ago, nobody answered — the sweep escalates it
    rid = referrals.create_referral(at(t), c, cid, institution_id=inst, reason="演示转介原因：持续情绪低落并有自伤念头，需专业评估。")
    if scenario == "draft":
        return cid
    if scenario == "override":
        referrals.transition(at(t + H), c, rid, "submit", consent="override",
                             reason="演示：监护人暂时无法联系，学生存在即时风险。")
        return cid
    referrals.transition(at(t + H), c, rid, "submit", consent="guardian")
    if scenario in ("requested", "overdue_requested"):
        return cid
    if scenario == "declined":
        referrals.transition(at(t + 5 * H), cl, rid, "decline", decline_code="no_capacity")
        return cid
    referrals.transition(at(t + 6 * H), cl, rid, "accept")
    if scenario == "accepted":
        return cid
    appt = now + D if scenario == "scheduled" else t + 40 * H
    referrals.transition(at(t + 8 * H), cl, rid, "schedule", appointment_at=appt)
    if scenario == "scheduled":
        return cid
    if scenario == "no_show":
        referrals.transition(at(t + 42 * H), cl, rid, "record_no_show")
        return cid
    referrals.transition(at(t + 42 * H), cl, rid, "record_attended")
    if scenario == "attended":
        return cid
    referrals.transition(at(t + 3 * D), cl, rid, "record_feedback", diagnosis_category=rng.choice(
        ["depressive_episode", "anxiety", "adjustment"]), recommendations="演示建议：门诊随访，两周一次；家校协同关注睡眠。",
        return_advice="演示复学建议：可复学，第一周半天到校，避免晚自习。")
    if scenario == "feedback":
        return cid
    referrals.transition(at(t + 4 * D), c, rid, "start_follow_up", reentry_items=[
        {"goal": "逐步恢复全天在校", "action": "第一周半天到校，第二周全天", "review_at": (now + 3 * D).isoformat()}])
    if scenario == "school_follow_up":
        return cid
    referrals.transition(at(t + 6 * D), c, rid, "close", reason="演示：复学顺利，转入学校常规跟进。")
    cases.close_case(at(t + 6 * D + H), c, cid, reason="演示：状态稳定，结案并纳入常规关注。")
    return cid


def _transfer(ctx: ServiceContext, c: Actor, cid: uuid.UUID, student: uuid.UUID, now: datetime, demo: Any) -> None:
    """The student moved to another school of the same stage; the handover waits for the new counsellor."""
    from mh_platform.db.models import AcademicYear
    from mh_platform.services import students as student_service

    with ctx.uow() as uow:
        s = uow.session
        e = current_enrolment(s, student)
        school = s.get(OrgUnit, e.school_unit_id) if e is not None else None
        if e is None or school is None:
            return
        target = next((k for k in demo.classes if k.grade_level == e.grade_level
                       and not k.path.startswith(school.path)), None)
        if target is None:
            return
        to_school = s.get(OrgUnit, uuid.UUID(target.path.strip("/").split("/")[2]))
        if to_school is None:
            return
        # a school without a counsellor cannot receive a handover: the demo gives it one (no demo
        # login: a random password nobody is told)
        lacking = None if transfers.users_at(s, Role.COUNSELLOR, to_school.id) else \
            (to_school.id, to_school.code, to_school.name)
    if lacking is not None:
        auth.create_user(ctx, SYSTEM, username=f"counsellor.{lacking[1]}", password=secrets.token_urlsafe(24),
                         role=Role.COUNSELLOR, unit_id=lacking[0], display_name=f"{lacking[2]}心理教师")
    with ctx.uow() as uow:
        s = uow.session
        e = current_enrolment(s, student)
        year = s.get(AcademicYear, e.academic_year_id) if e is not None else None
        st = s.get(Student, student)
        if year is None or st is None:
            return
        student_service.enrol(s, st, s.merge(target), year, now - 2 * D, ctx)
        uow.commit()
    transfers.request_transfer(_at(ctx, now - D), c, cid,
                               handover_note="演示交接：学生随家庭迁居转学；每周一次个别辅导有效，请继续。")
