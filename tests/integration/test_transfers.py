"""Transfers: a student with an open case moves school; counsellor-to-counsellor handover moves access."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from cases_world import build, confirmed_flag, quick_argon2  # noqa: F401 - autouse fixture

from mh_platform.core.errors import InvalidTransition, NotFound
from mh_platform.db.models import (
    AcademicYear,
    Case,
    EventLog,
    FollowUp,
    PlanItem,
    Referral,
    Student,
    Transfer,
)
from mh_platform.services import auth, cases, referrals, students, transfers
from mh_platform.services.context import SYSTEM


@pytest.fixture
def world(ctx):
    return build(ctx)


def _move(ctx, student_id, class_unit):
    with ctx.uow() as uow:
        s = uow.session
        year = s.scalar(sa.select(AcademicYear).where(AcademicYear.is_current.is_(True)))
        students.enrol(s, s.get(Student, student_id), class_unit, year, ctx.now())
        uow.commit()


def test_handover_moves_the_case_and_its_access(ctx, world, clock):
    w = world
    old, new = w.actors["counsellor.a"], w.actors["counsellor.a2"]
    flag = confirmed_flag(ctx, w.students[0], "red")
    cid = cases.open_case(ctx, old, flag, summary="个案摘要")
    pid = cases.add_plan_item(ctx, old, cid, goal="目标", action="措施", review_at=clock.now() + timedelta(days=3))
    fid = cases.schedule_follow_up(ctx, old, cid, due_at=clock.now() + timedelta(days=1))
    done = cases.schedule_follow_up(ctx, old, cid, due_at=clock.now())
    cases.complete_follow_up(ctx, old, done, note="已完成的随访")
    rid = referrals.create_referral(ctx, old, cid, institution_id=w.inst1, reason="需要评估")
    referrals.transition(ctx, old, rid, "submit", consent="guardian")

    with pytest.raises(InvalidTransition, match="not moved"):
        transfers.request_transfer(ctx, old, cid, handover_note="x")
    _move(ctx, w.students[0], w.class_a2)  # the student moves to school A2 (same county)
    assert "handover_needed" in [t["kind"] for t in cases.due_tasks(ctx, old, clock.now())]
    # before the handover the new school has no access, the old one keeps it
    with pytest.raises(NotFound):
        cases.case_detail(ctx, new, cid)
    assert cases.case_detail(ctx, old, cid)["student_moved_to"] == str(w.school_a2.id)

    tid = transfers.request_transfer(ctx, old, cid, handover_note="父母离异后随母亲迁居；每周一次辅导有效")
    with pytest.raises(InvalidTransition):
        transfers.request_transfer(ctx, old, cid, handover_note="again")
    with pytest.raises(InvalidTransition, match="handed over"):
        referrals.transition(ctx, old, rid, "cancel", reason="x")
    assert [t["id"] for t in transfers.incoming_transfers(ctx, new)] == [str(tid)]
    assert transfers.incoming_transfers(ctx, w.actors["counsellor.b"]) == []
    assert [t["kind"] for t in cases.due_tasks(ctx, new, clock.now())] == ["handover_incoming"]
    for who in ("counsellor.b", "counsellor.a", "leader.a", "county.a"):
        with pytest.raises(NotFound):
            transfers.transfer_detail(ctx, w.actors[who], tid)
        with pytest.raises(NotFound):
            transfers.accept_transfer(ctx, w.actors[who], tid)
    d = transfers.transfer_detail(ctx, new, tid)
    assert d["handover_note"].startswith("父母离异") and d["from_school"] == "兴隆台实验中学"

    clock.advance(hours=1)
    assert transfers.accept_transfer(ctx, new, tid) == cid
    with pytest.raises(InvalidTransition):
        transfers.accept_transfer(ctx, new, tid)
    # the old school lost access; the new one has everything, history kept
    for who in ("counsellor.a", "leader.a"):
        with pytest.raises(NotFound):
            cases.case_detail(ctx, w.actors[who], cid)
        with pytest.raises(NotFound):
            referrals.referral_detail(ctx, w.actors[who], rid)
    assert cases.list_cases(ctx, old) == []
    d = cases.case_detail(ctx, new, cid)
    assert d["view"] == "full" and d["is_case_counsellor"] and d["school_id"] == str(w.school_a2.id)
    assert [p["goal"] for p in d["plan"]] == ["目标"] and len(d["follow_ups"]) == 2
    assert [f["note"] for f in d["follow_ups"] if f["done_at"]] == ["已完成的随访"]
    assert d["referrals"][0]["id"] == str(rid) and d["referrals"][0]["state"] == "requested"
    referrals.transition(ctx, w.actors["clinician.one"], rid, "accept")  # the institution carries on
    with ctx.uow() as uow:
        s = uow.session
        case = s.get(Case, cid)
        assert (case.status, case.school_unit_id, case.counsellor_user_id) == ("open", w.school_a2.id, new.user_id)
        assert s.get(PlanItem, pid).owner_user_id == new.user_id
        assert s.get(FollowUp, fid).owner_user_id == new.user_id
        assert s.get(Referral, rid).unit_path == w.school_a2.path
        tr = s.get(Transfer, tid)
        assert (tr.status, tr.from_school_id, tr.to_school_id, tr.accepted_by) == (
            "accepted", w.school_a.id, w.school_a2.id, new.user_id)
        kinds = [e.kind for e in s.scalars(sa.select(EventLog).where(EventLog.kind.like("transfer:%"))
                                           .order_by(EventLog.id))]
        assert kinds == ["transfer:requested", "transfer:accepted"]
    assert [t["kind"] for t in cases.due_tasks(ctx, new, clock.now())][0] == "follow_up"


def test_cross_county_move_and_cancel(ctx, world):
    w = world
    old = w.actors["counsellor.a"]
    flag = confirmed_flag(ctx, w.students[1], "red")
    cid = cases.open_case(ctx, old, flag)
    _move(ctx, w.students[1], w.class_b)  # to county B
    tid = transfers.request_transfer(ctx, old, cid, handover_note="交接说明")
    transfers.cancel_transfer(ctx, old, tid)
    with pytest.raises(NotFound):
        transfers.transfer_detail(ctx, w.actors["counsellor.b"], tid)
    assert cases.case_detail(ctx, old, cid)["status"] == "open"
    tid2 = transfers.request_transfer(ctx, old, cid, handover_note="再次交接")
    transfers.accept_transfer(ctx, w.actors["counsellor.b"], tid2)
    assert cases.case_detail(ctx, w.actors["counsellor.b"], cid)["view"] == "full"
    # county A's officer no longer reaches it even as a break-glass candidate; county B's does
    assert cases.list_cases(ctx, w.actors["county.a"]) == []
    assert [c["id"] for c in cases.list_cases(ctx, w.actors["county.b"])] == [str(cid)]


def test_no_handover_to_a_school_without_a_counsellor(ctx, world, clock):
    """A handover nobody at the new school could accept is refused: the case stays open with its
    counsellor (who keeps the task to hand it over) instead of waiting, unseen, on no one."""
    w = world
    old = w.actors["counsellor.a"]
    cid = cases.open_case(ctx, old, confirmed_flag(ctx, w.students[0], "red"))
    _move(ctx, w.students[0], w.class_a2)
    auth.set_active(ctx, SYSTEM, w.user_ids["counsellor.a2"], False)  # school A2's only counsellor
    with pytest.raises(InvalidTransition, match="no counsellor"):
        transfers.request_transfer(ctx, old, cid, handover_note="交接说明")
    assert cases.case_detail(ctx, old, cid)["status"] == "open"
    assert "handover_needed" in [t["kind"] for t in cases.due_tasks(ctx, old, clock.now())]
    with ctx.uow() as uow:
        assert not uow.session.scalar(sa.select(sa.func.count()).select_from(Transfer))
    auth.set_active(ctx, SYSTEM, w.user_ids["counsellor.a2"], True)
    tid = transfers.request_transfer(ctx, old, cid, handover_note="交接说明")
    transfers.accept_transfer(ctx, w.actors["counsellor.a2"], tid)
    assert cases.case_detail(ctx, w.actors["counsellor.a2"], cid)["view"] == "full"
