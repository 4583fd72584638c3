"""Cases (一生一策) through the services on the real database: opening, plan, follow-ups, guardian
contacts, access by role and unit, the school leader told on red, due tasks, the access log."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from cases_world import build, confirmed_flag, quick_argon2  # noqa: F401 - autouse fixture

from mh_platform.core.errors import Conflict, Forbidden, InvalidTransition, NotFound, ValidationFailed
from mh_platform.db.models import AccessLog, Case, EventLog, Flag, FollowUp, GuardianContact, Outbox, PlanItem
from mh_platform.services import audit, cases, referrals


@pytest.fixture
def world(ctx):
    return build(ctx)


def _open(ctx, w, level="red", i=0):
    flag = confirmed_flag(ctx, w.students[i], level)
    return cases.open_case(ctx, w.actors["counsellor.a"], flag, summary="访谈后确认：近两周情绪低落，有自伤念头")


def test_case_needs_a_confirmed_flag_of_own_school(ctx, world):
    w = world
    raised = confirmed_flag(ctx, w.students[0], "red", status="raised")
    with pytest.raises(InvalidTransition, match="confirmed"):
        cases.open_case(ctx, w.actors["counsellor.a"], raised)
    other = confirmed_flag(ctx, w.student_b, "red")
    with pytest.raises(NotFound):
        cases.open_case(ctx, w.actors["counsellor.a"], other)  # another county's flag looks missing
    with pytest.raises(Forbidden):
        cases.open_case(ctx, w.actors["teacher.a"], other)
    with pytest.raises(NotFound):
        cases.open_case(ctx, w.actors["counsellor.a"], "not-a-uuid")


def test_red_case_informs_the_leader_without_names_and_one_open_case_per_student(ctx, world):
    w = world
    cid = _open(ctx, w, "red")
    with ctx.uow() as uow:
        s = uow.session
        case = s.get(Case, cid)
        assert case.leader_informed_at == ctx.now() and case.status == "open" and case.level == "red"
        assert "自伤".encode() not in case.summary_enc
        rows = s.scalars(sa.select(Outbox).where(Outbox.template == "case_red_opened")).all()
        assert {r.recipient_user_id for r in rows} == {w.user_ids["leader.a"]}
        assert {r.channel for r in rows} == {"inbox", "email"}
        for r in rows:
            text = repr(r.params)
            assert "学生甲0" not in text and "自伤" not in text and set(r.params) == {"unit", "link"}
        ev = s.scalars(sa.select(EventLog).where(EventLog.kind == "case:opened")).one()
        assert ev.data["leader_informed"] is True and "summary" not in ev.data
        flag = s.get(Flag, case.flag_id)  # the flag's lifecycle follows the case work
        assert flag.status == "intervention" and flag.version == 2
    flag2 = confirmed_flag(ctx, w.students[1], "orange")
    cid2 = cases.open_case(ctx, w.actors["counsellor.a"], flag2)
    with ctx.uow() as uow:
        assert uow.session.get(Case, cid2).leader_informed_at is None  # orange: no leader notice
    # a second open case for the same student is refused (service check and the partial unique index)
    with ctx.uow() as uow:
        s = uow.session
        f3 = s.scalar(sa.select(Case.flag_id).where(Case.id == cid))
    with pytest.raises(Conflict):
        cases.open_case(ctx, w.actors["counsellor.a"], f3)


def test_plan_follow_ups_contacts_are_sealed_and_shown_to_the_counsellor(ctx, world, clock):
    w = world
    cid = _open(ctx, w)
    c = w.actors["counsellor.a"]
    pid = cases.add_plan_item(ctx, c, cid, goal="恢复规律作息", action="每周两次个别辅导",
                              review_at=clock.now() + timedelta(days=7), owner_user_id=w.user_ids["teacher.a"])
    fid = cases.schedule_follow_up(ctx, c, cid, due_at=clock.now() + timedelta(days=2))
    gid = cases.log_guardian_contact(ctx, c, cid, method="phone", note="母亲同意陪同就医")
    with ctx.uow() as uow:
        s = uow.session
        item = s.get(PlanItem, pid)
        assert "规律作息".encode() not in item.goal_enc and item.owner_user_id == w.user_ids["teacher.a"]
        assert "陪同就医".encode() not in s.get(GuardianContact, gid).note_enc
    cases.complete_follow_up(ctx, c, fid, note="情绪较前平稳")
    with pytest.raises(InvalidTransition):
        cases.complete_follow_up(ctx, c, fid, note="again")
    with pytest.raises(ValidationFailed):
        cases.add_plan_item(ctx, c, cid, goal="", action="x", review_at=clock.now())
    with pytest.raises(ValidationFailed, match="owner"):
        cases.add_plan_item(ctx, c, cid, goal="g", action="a", review_at=clock.now(),
                            owner_user_id=w.user_ids["counsellor.b"])  # works at another school
    with pytest.raises(ValidationFailed):
        cases.log_guardian_contact(ctx, c, cid, method="pigeon", note="x")
    d = cases.case_detail(ctx, c, cid)
    assert d["view"] == "full" and d["student_name"] == "学生甲0"
    assert d["plan"][0]["goal"] == "恢复规律作息" and d["plan"][0]["action"] == "每周两次个别辅导"
    assert d["follow_ups"][0]["note"] == "情绪较前平稳" and d["follow_ups"][0]["done_at"]
    assert d["guardian_contacts"][0]["note"] == "母亲同意陪同就医"
    assert d["summary"].startswith("访谈后确认")


def test_leader_gets_a_summary_without_clinical_text_and_others_get_404(ctx, world, clock):
    w = world
    cid = _open(ctx, w)
    cases.add_plan_item(ctx, w.actors["counsellor.a"], cid, goal="目标", action="措施", review_at=clock.now())
    d = cases.case_detail(ctx, w.actors["leader.a"], cid)
    assert d["view"] == "summary" and d["summary"] is None and d["student_name"] is None
    assert d["plan"][0]["goal"] is None and d["counts"]["plan_active"] == 1
    with pytest.raises(Forbidden):
        cases.add_plan_item(ctx, w.actors["leader.a"], cid, goal="g", action="a", review_at=clock.now())
    for who in ("teacher.a", "counsellor.a2", "counsellor.b", "county.a", "county.b", "city", "clinician.one",
                "admin"):
        with pytest.raises(NotFound):
            cases.case_detail(ctx, w.actors[who], cid)
        with pytest.raises(NotFound):
            cases.schedule_follow_up(ctx, w.actors[who], cid, due_at=clock.now())
    assert [x["id"] for x in cases.list_cases(ctx, w.actors["leader.a"])] == [str(cid)]
    assert cases.list_cases(ctx, w.actors["counsellor.b"]) == []
    assert cases.list_cases(ctx, w.actors["teacher.a"]) == []
    # officers see the red cases of their area (break-glass candidates), without text
    assert [x["id"] for x in cases.list_cases(ctx, w.actors["county.a"])] == [str(cid)]
    assert cases.list_cases(ctx, w.actors["county.b"]) == []


def test_every_decryption_a_person_causes_is_logged_with_a_purpose(ctx, world, clock):
    w = world
    cid = _open(ctx, w)
    c = w.actors["counsellor.a"]
    for i in range(3):
        cases.add_plan_item(ctx, c, cid, goal=f"目标{i}", action=f"措施{i}", review_at=clock.now())
    fid = cases.schedule_follow_up(ctx, c, cid, due_at=clock.now())
    cases.schedule_follow_up(ctx, c, cid, due_at=clock.now())  # no note yet: nothing to open
    cases.complete_follow_up(ctx, c, fid, note="记录")
    cases.log_guardian_contact(ctx, c, cid, method="home_visit", note="家访")

    def count(**kw):
        with ctx.uow() as uow:
            q = sa.select(sa.func.count()).select_from(AccessLog)
            for k, v in kw.items():
                q = q.where(getattr(AccessLog, k) == v)
            return uow.session.scalar(q)

    assert count() == 0  # writing seals; nothing was opened for a person yet
    cases.case_detail(ctx, c, cid)
    # name + summary + 3×(goal, action) + 1 follow-up note + 1 contact note = 10
    assert count(user_id=c.user_id, purpose="case_work") == 10
    with ctx.uow() as uow:
        rows = uow.session.scalars(sa.select(AccessLog)).all()
        assert {r.field for r in rows} == {"name_enc", "summary_enc", "goal_enc", "action_enc", "note_enc"}
        assert all(r.role == "counsellor" and r.student_id == w.students[0] and r.unit_id == c.unit_id for r in rows)
    cases.case_detail(ctx, w.actors["leader.a"], cid)
    assert count(user_id=w.actors["leader.a"].user_id) == 0  # the summary opens nothing
    cases.list_cases(ctx, c)
    cases.due_tasks(ctx, c, clock.now())
    assert count() == 10  # lists and queues open nothing
    assert audit.sequence(ctx).rejected == 0 and audit.verify(ctx).ok


def test_due_tasks_overdue_first_for_the_owner(ctx, world, clock):
    w = world
    cid = _open(ctx, w)
    c, c2 = w.actors["counsellor.a"], w.actors["counsellor.a.two"]
    now = clock.now()
    f_late = cases.schedule_follow_up(ctx, c, cid, due_at=now - timedelta(days=1))
    f_soon = cases.schedule_follow_up(ctx, c, cid, due_at=now + timedelta(days=2))
    cases.schedule_follow_up(ctx, c, cid, due_at=now + timedelta(days=30))  # beyond the horizon
    f_other = cases.schedule_follow_up(ctx, c, cid, due_at=now, owner_user_id=w.user_ids["counsellor.a.two"])
    p = cases.add_plan_item(ctx, c, cid, goal="g", action="a", review_at=now + timedelta(hours=5))
    tasks = cases.due_tasks(ctx, c, now)
    assert [(t["kind"], t["object_id"]) for t in tasks] == [
        ("follow_up", str(f_late)), ("plan_review", str(p)), ("follow_up", str(f_soon))]
    assert tasks[0]["overdue"] and not tasks[1]["overdue"]
    assert all("name" not in k for t in tasks for k in t)
    assert [t["object_id"] for t in cases.due_tasks(ctx, c2, now)] == [str(f_other)]
    assert cases.due_tasks(ctx, w.actors["counsellor.b"], now) == []
    assert cases.due_tasks(ctx, w.actors["leader.a"], now) == []
    cases.complete_follow_up(ctx, c, f_late, note="done")
    assert str(f_late) not in [t["object_id"] for t in cases.due_tasks(ctx, c, now)]


def test_close_case_needs_reason_and_no_open_referral(ctx, world):
    w = world
    cid = _open(ctx, w)
    c = w.actors["counsellor.a"]
    rid = referrals.create_referral(ctx, c, cid, institution_id=w.inst1, reason="需要专业评估")
    with pytest.raises(ValidationFailed):
        cases.close_case(ctx, c, cid, reason=" ")
    with pytest.raises(InvalidTransition, match="referral"):
        cases.close_case(ctx, c, cid, reason="已稳定")
    referrals.transition(ctx, c, rid, "cancel", reason="家长选择其他医院")
    cases.close_case(ctx, c, cid, reason="已稳定，转入常规关注")
    with ctx.uow() as uow:
        case = uow.session.get(Case, cid)
        assert case.status == "closed" and case.closed_by == c.user_id
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(FollowUp)) == 0
    with pytest.raises(InvalidTransition):
        cases.add_plan_item(ctx, c, cid, goal="g", action="a", review_at=ctx.now())


def test_after_shredding_the_case_stays_as_history_but_reads_unreadable(ctx, world, clock, tmp_path):
    import dataclasses

    from mh_platform.services import key_ops
    from mh_platform.services.disclosure import UNREADABLE

    w = world
    ctx.settings = dataclasses.replace(ctx.settings, erasure_ledger_file=str(tmp_path / "ledger.jsonl"))
    cid = _open(ctx, w)
    cases.add_plan_item(ctx, w.actors["counsellor.a"], cid, goal="目标", action="措施", review_at=clock.now())
    req = key_ops.request_erasure(ctx, w.actors["admin"], w.students[0], "guardian_request")
    key_ops.approve_erasure(ctx, w.actors["city"], req["request"])
    d = cases.case_detail(ctx, w.actors["counsellor.a"], cid)
    assert d["summary"] == UNREADABLE and d["plan"][0]["goal"] == UNREADABLE and d["student_name"] == UNREADABLE
    with pytest.raises(InvalidTransition, match="erased"):
        cases.add_plan_item(ctx, w.actors["counsellor.a"], cid, goal="g", action="a", review_at=clock.now())
