"""Seed a small real city through the services with a unique canary in every encrypted field.

Used by the ciphertext-at-rest test (T3). Everything goes through the public services as a page,
the API or the CLI would call them: roster import (bulk sealing), ``add_student`` with guardians,
concerns, the flag interview, cases (summary, plan, follow-ups, guardian contacts, closing),
green-channel referrals through every state (override consent, decline + re-route, feedback,
re-entry plan, closing notes), break-glass, transfers, TOTP enrolment and online screening answers.
"""

from __future__ import annotations

import random
import sys
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pyotp
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent / "integration"))

from cases_world import PASSWORD, CaseWorld, build  # noqa: E402
from screening_world import HEADER, build_world, class_units, make_user, to_csv  # noqa: E402
from support_security import Canaries  # noqa: E402

from mh_platform.core.instruments import load_instrument  # noqa: E402
from mh_platform.core.types import Role  # noqa: E402
from mh_platform.db.models import AcademicYear, Enrolment, OrgUnit, Response  # noqa: E402
from mh_platform.services import (  # noqa: E402
    auth,
    breakglass,
    campaigns,
    cases,
    concerns,
    consent,
    flags,
    referrals,
    responses,
    roster,
    students,
    totp,
    transfers,
)

DIAGNOSES = ("depressive_episode", "trauma_stress", "neurodevelopmental")
BATTERY = ("phq9", "gad7", "asq", "k10", "who5")


@dataclass
class Seeded:
    world: CaseWorld
    canaries: Canaries
    student_ids: list[uuid.UUID] = field(default_factory=list)
    case_ids: list[uuid.UUID] = field(default_factory=list)
    referral_ids: list[uuid.UUID] = field(default_factory=list)
    response_ids: list[uuid.UUID] = field(default_factory=list)
    diagnoses: list[str] = field(default_factory=list)


def _students(ctx, w: CaseWorld, cn: Canaries, n: int) -> list[uuid.UUID]:
    now = ctx.now()
    ids = []
    with ctx.uow() as uow:
        s = uow.session
        cls = s.get(OrgUnit, w.class_a.id)
        year = s.get(AcademicYear, w.year_id)
        for i in range(n):
            gs = [students.GuardianIn(cn.name("guardian.name_enc"), "mother", cn.phone("guardian.phone_enc")),
                  students.GuardianIn(cn.name("guardian.name_enc"), "father", cn.phone("guardian.phone_enc"))]
            st = students.add_student(ctx, s, name=cn.name("student.name_enc"), sex="F" if i % 2 else "M",
                                      birth_year=2012, class_unit=cls, year=year, now=now,
                                      student_number=cn.student_number("student.student_number_enc"),
                                      id_number=cn.id_number("student.id_number_enc"), guardians=gs)
            ids.append(st.id)
        uow.commit()
    return ids


def _move(ctx, student_id: uuid.UUID, class_unit_id: uuid.UUID) -> None:
    from mh_platform.db.models import Student

    with ctx.uow() as uow:
        s = uow.session
        year = s.scalar(sa.select(AcademicYear).where(AcademicYear.is_current.is_(True)))
        students.enrol(s, s.get(Student, student_id), s.get(OrgUnit, class_unit_id), year, ctx.now())
        uow.commit()


def case_flow(ctx, w: CaseWorld, cn: Canaries, sid: uuid.UUID, i: int, seeded: Seeded) -> None:
    """One student from a concern to a closed (or handed-over) case, a canary in every free text."""
    c, one, two = w.actors["counsellor.a"], w.actors["clinician.one"], w.actors["clinician.two"]
    clock = ctx.clock
    out = concerns.submit_concern(ctx, w.actors["teacher.a"], student_id=sid, category="self_harm",
                                  urgency="immediate", note=cn.text("concern.note_enc", "关注"))
    fid = out["flag_id"]
    flags.acknowledge(ctx, c, fid)
    flags.assess(ctx, c, fid, "confirm", reason=cn.text("flag_event.reason_enc", "访谈"))
    cid = cases.open_case(ctx, c, fid, summary=cn.text("case_file.summary_enc", "摘要"))
    seeded.case_ids.append(cid)
    now = ctx.now()
    cases.add_plan_item(ctx, c, cid, goal=cn.text("plan_item.goal_enc", "目标"),
                        action=cn.text("plan_item.action_enc", "措施"), review_at=now + timedelta(days=7))
    fu = cases.schedule_follow_up(ctx, c, cid, due_at=now + timedelta(days=2))
    cases.complete_follow_up(ctx, c, fu, note=cn.text("follow_up.note_enc", "随访"))
    cases.log_guardian_contact(ctx, c, cid, method="phone", note=cn.text("guardian_contact.note_enc", "家校"))
    breakglass.open_break_glass(ctx, w.actors["county.a"], cid, reason=cn.text("break_glass.reason_enc", "紧急查看"))
    rid = referrals.create_referral(ctx, c, cid, institution_id=w.inst1, reason=cn.text("referral.reason_enc", "转介"))
    seeded.referral_ids.append(rid)
    referrals.transition(ctx, c, rid, "submit", consent="override",
                         reason=cn.text("referral.override_reason_enc", "紧急转介"))
    clock.advance(hours=1)
    referrals.transition(ctx, one, rid, "decline", decline_code="no_capacity",
                         reason=cn.text("referral_event.note_enc", "婉拒"))
    referrals.transition(ctx, c, rid, "reroute", institution_id=w.inst2,
                         reason=cn.text("referral_event.note_enc", "改派"))
    referrals.transition(ctx, two, rid, "accept")
    referrals.transition(ctx, two, rid, "schedule", appointment_at=ctx.now() + timedelta(hours=20))
    clock.advance(hours=21)
    referrals.transition(ctx, two, rid, "record_attended")
    diagnosis = DIAGNOSES[i % len(DIAGNOSES)]
    seeded.diagnoses.append(diagnosis)
    referrals.transition(ctx, two, rid, "record_feedback", diagnosis_category=diagnosis,
                         recommendations=cn.text("referral.feedback_enc", "临床建议"),
                         return_advice=cn.text("referral.return_advice_enc", "复学建议"))
    referrals.transition(ctx, c, rid, "start_follow_up", reentry_items=[
        {"goal": cn.text("plan_item.goal_enc", "复学目标"), "action": cn.text("plan_item.action_enc", "复学措施"),
         "review_at": (ctx.now() + timedelta(days=7)).isoformat()}])
    referrals.transition(ctx, c, rid, "close", reason=cn.text("referral_event.note_enc", "转介结束"))
    if i % 3 == 2:  # the student moves to another school: hand the case over
        _move(ctx, sid, w.class_a2.id)
        transfers.request_transfer(ctx, c, cid, handover_note=cn.text("case_transfer.handover_enc", "交接"))
    else:
        cases.close_case(ctx, c, cid, reason=cn.text("case_file.close_reason_enc", "结案"))


def _totp(ctx, w: CaseWorld, cn: Canaries, usernames: tuple[str, ...]) -> None:
    from dataclasses import replace

    from mh_platform.core.types import Role

    saved = ctx.settings
    ctx.settings = replace(saved, totp_roles=tuple(r.value for r in Role))  # every login asks for a code
    try:
        for username in usernames:
            res = auth.authenticate(ctx, username, PASSWORD)
            assert res.ok and res.pending_token, username
            secret = cn.given(totp.candidate_secret(ctx, res.pending_token), "app_user.totp_secret_enc")
            assert totp.enrol(ctx, res.pending_token, pyotp.TOTP(secret).at(ctx.now())) is not None
    finally:
        ctx.settings = saved


def _screening(ctx, cn: Canaries, n_classes: int, per_class: int, n_answering: int,
               seeded: Seeded) -> None:
    w = build_world(ctx)
    rows = []
    for c in range(1, n_classes + 1):
        for k in range(per_class):
            rows.append(["xlt-s001", "七年级", f"{c}班", cn.student_number("student.student_number_enc"),
                         cn.name("student.name_enc"), "男" if k % 2 else "女", "2013",
                         cn.name("guardian.name_enc"), "母亲", cn.phone("guardian.phone_enc")])
    pv = roster.commit(ctx, w.counsellor, to_csv(rows, HEADER), "roster.csv")
    assert pv.ok, pv.as_dict()
    ids = []
    for i, cls in enumerate(class_units(ctx, w.school)):
        ht = make_user(ctx, f"cw.ht{i}", Role.HEAD_TEACHER, cls.id)
        with ctx.uow() as uow:
            cls_ids = list(uow.session.scalars(sa.select(Enrolment.student_id)
                                               .where(Enrolment.class_unit_id == cls.id)))
        consent.record_many(ctx, ht, [consent.ConsentIn(sid, "granted") for sid in cls_ids])
        ids += cls_ids
    now = ctx.now()
    camp = campaigns.create(ctx, w.counsellor, name="普测", unit_ids=[w.school.id], grades=[7],
                            opens_at=now - timedelta(minutes=1), closes_at=now + timedelta(days=3))
    campaigns.open_due(ctx, now)
    codes = campaigns.issue_codes_system(ctx, camp)
    rng = random.Random(7)
    for sid in ids[:n_answering]:
        sess = responses.begin(ctx, codes[sid])
        for iid in BATTERY:
            inst = load_instrument(iid)
            ans = {str(it.number): rng.choice([o.value for o in it.options]) for it in inst.items}
            responses.submit(ctx, sess.sitting, iid, ans, {k: 2000 for k in ans})
    with ctx.uow() as uow:
        seeded.response_ids = list(uow.session.scalars(sa.select(Response.id)))


def seed(ctx, *, n_students: int = 130, n_cases: int = 6, roster_classes: int = 2, per_class: int = 30,
         n_answering: int = 6, totp_users: tuple[str, ...] = ("counsellor.a", "county.a", "city")) -> Seeded:
    cn = Canaries()
    w = build(ctx, n=1)
    seeded = Seeded(w, cn)
    seeded.student_ids = _students(ctx, w, cn, n_students)
    for i, sid in enumerate(seeded.student_ids[:n_cases]):
        case_flow(ctx, w, cn, sid, i, seeded)
    _totp(ctx, w, cn, totp_users)
    _screening(ctx, cn, roster_classes, per_class, n_answering, seeded)
    return seeded
