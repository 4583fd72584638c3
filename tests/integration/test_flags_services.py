"""Flags through the services on the real database: raise, attach, lifecycle, scope, sweep, clusters."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from flags_world import flag_phq9, quick_hashes, world  # noqa: F401 - fixtures

from mh_platform.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from mh_platform.core.flag_rules import WatchSignal
from mh_platform.db.models import ClusterAlert, EventLog, Flag, FlagEvent, Outbox
from mh_platform.services import audit, concerns, escalation, flags, notify


def fetch(ctx, stmt) -> list:
    """Rows of ``stmt``, detached with their loaded values (the read-only uow rolls back on exit)."""
    with ctx.uow() as uow:
        out = list(uow.session.scalars(stmt).all())
        uow.session.expunge_all()
        return out


def _flag(ctx, flag_id) -> Flag:
    with ctx.uow() as uow:
        f = uow.session.get(Flag, uuid.UUID(str(flag_id)))
        uow.session.expunge(f)
        return f


def test_monitor_concern_opens_class_tier_flag_and_reporter_sees_only_status(ctx, world):
    a = world.actors
    out = concerns.submit_concern(ctx, a["monitor"], student_id=world.students[1], category="mood",
                                  urgency="soon", note="在走廊里哭了很久")
    f = _flag(ctx, out["flag_id"])
    assert (f.level, f.tier, f.status) == ("orange", "class", "raised")
    assert f.ack_due_at == ctx.now() + __import__("datetime").timedelta(hours=24)
    mine = concerns.my_concerns(ctx, a["monitor"])
    assert [m["status"] for m in mine] == ["received"]
    assert set(mine[0]) == {"id", "created_at", "category", "urgency", "status", "student_id", "pseudonym"}
    # the monitor never reaches the flag, by id or in a list
    with pytest.raises(NotFound):
        flags.get_flag(ctx, a["monitor"], out["flag_id"])
    assert flags.list_flags(ctx, a["monitor"]) == ([], 0)
    # the head teacher is told (inbox + email) with no names or clinical detail
    rows = fetch(ctx, sa.select(Outbox).where(Outbox.recipient_user_id == a["head"].user_id))
    assert {r.channel for r in rows} == {"inbox", "email"}
    for r in rows:
        subject, body = notify.render(r.template, r.params, "http://x")
        assert "哭" not in body and "学生" not in subject and "orange" not in body and "橙" not in body
        assert f"/flags/{f.id}" in body
    # the note is sealed
    with ctx.uow() as uow:
        raw = uow.session.execute(sa.text("select note_enc from concern")).scalar()
    assert "哭".encode() not in raw


def test_a_monitors_concern_status_tells_nothing_of_the_classmates_earlier_flag(ctx, world):
    """A concern joins the classmate's open flag. Its status for the monitor moves only with what
    staff do after it was logged: a flag acknowledged before reads the same "received" as no flag."""
    a = world.actors
    earlier = concerns.submit_concern(ctx, a["counsellor"], student_id=world.students[1], category="mood",
                                      urgency="soon", note="")
    flags.acknowledge(ctx, a["counsellor"], earlier["flag_id"])  # classmate 1: a flag being handled
    ctx.clock.advance(minutes=5)
    for sid in (world.students[1], world.students[2]):  # classmate 2: no flag
        concerns.submit_concern(ctx, a["monitor"], student_id=sid, category="other", urgency="routine", note="")

    def status() -> dict[str, str]:
        return {m["student_id"]: m["status"] for m in concerns.my_concerns(ctx, a["monitor"])}

    assert status() == {str(world.students[1]): "received", str(world.students[2]): "received"}
    assert {m["status"] for m in concerns.list_concerns(ctx, a["monitor"])} == {"received"}
    # what staff do after the concern shows: classmate 2's flag acknowledged, classmate 1's closed
    ctx.clock.advance(minutes=5)
    second = _flag(ctx, next(m["flag_id"] for m in concerns.list_concerns(ctx, a["counsellor"])
                            if m["student_id"] == str(world.students[2])))
    flags.escalate(ctx, a["head"], second.id, "请心理老师看看")
    assert status()[str(world.students[2])] == "received"  # a tier change is not progress on the concern
    flags.acknowledge(ctx, a["counsellor"], second.id)
    flags.assess(ctx, a["counsellor"], earlier["flag_id"], "change_level", new_level="yellow", reason="访谈后评估")
    flags.start_monitoring(ctx, a["counsellor"], earlier["flag_id"])
    flags.close(ctx, a["counsellor"], earlier["flag_id"], "情况稳定")
    assert status() == {str(world.students[1]): "closed", str(world.students[2]): "in_progress"}
    # staff reporters keep reading the flag's own status
    assert {m["status"] for m in concerns.my_concerns(ctx, a["counsellor"])} == {"closed"}


def test_monitor_cannot_report_outside_class_or_self(ctx, world):
    a = world.actors
    with pytest.raises(NotFound):
        concerns.submit_concern(ctx, a["monitor"], student_id=world.students2[0], category="mood",
                                urgency="routine", note="")
    with pytest.raises(ValidationFailed):
        concerns.submit_concern(ctx, a["monitor"], student_id=world.students[0], category="mood",
                                urgency="routine", note="")
    with pytest.raises(ValidationFailed):
        concerns.submit_concern(ctx, a["monitor"], student_id=world.students[1], category="mood",
                                urgency="whenever", note="")
    with pytest.raises(Forbidden):
        concerns.submit_concern(ctx, a["county"], student_id=world.students[1], category="mood",
                                urgency="routine", note="")


def test_head_teacher_pushes_to_school_then_counsellor_handles_to_close(ctx, world):
    a = world.actors
    out = concerns.submit_concern(ctx, a["monitor"], student_id=world.students[1], category="withdrawal",
                                  urgency="soon", note="不和人说话")
    fid = out["flag_id"]
    view = flags.get_flag(ctx, a["head"], fid)
    assert "evidence" not in view and "acknowledge" in view["actions"] and "escalate" in view["actions"]
    with pytest.raises(ValidationFailed):
        flags.escalate(ctx, a["head"], fid, "  ")
    flags.escalate(ctx, a["head"], fid, "需要心理老师访谈")
    f = _flag(ctx, fid)
    assert (f.tier, f.escalations) == ("school", 1)
    # the head teacher still sees it, may no longer act at the school tier
    with pytest.raises(Forbidden):
        flags.acknowledge(ctx, a["head"], fid)
    flags.acknowledge(ctx, a["counsellor"], fid)
    with pytest.raises(ValidationFailed):
        flags.assess(ctx, a["counsellor"], fid, "change_level", new_level="yellow")
    flags.assess(ctx, a["counsellor"], fid, "change_level", new_level="yellow", reason="访谈后评估为一般关注")
    flags.start_monitoring(ctx, a["counsellor"], fid)
    with pytest.raises(ValidationFailed):
        flags.close(ctx, a["counsellor"], fid, None)
    flags.close(ctx, a["counsellor"], fid, "随访三周情况稳定")
    assert _flag(ctx, fid).status == "closed"
    assert concerns.my_concerns(ctx, a["monitor"])[0]["status"] == "closed"
    detail = flags.get_flag(ctx, a["counsellor"], fid, reveal_reasons=True)
    kinds = [e["kind"] for e in detail["events"]]
    assert kinds == ["flag:raised", "flag:escalated", "flag:acknowledged", "flag:level_changed",
                     "flag:monitoring_started", "flag:closed"]
    assert detail["events"][1]["reason"] == "需要心理老师访谈"
    with ctx.uow() as uow:
        raw = b"".join(r for r in uow.session.scalars(sa.select(FlagEvent.reason_enc)) if r)
        logged = uow.session.scalars(sa.select(EventLog.kind).where(EventLog.object_id == str(fid))).all()
    assert "访谈".encode() not in raw
    assert set(kinds) <= set(logged)
    assert audit.sequence(ctx).rejected == 0 and audit.verify(ctx).ok


def test_red_and_orange_close_needs_counsellor_review(ctx, world):
    a = world.actors
    fid = concerns.submit_concern(ctx, a["head"], student_id=world.students[2], category="self_harm",
                                  urgency="immediate", note="")["flag_id"]
    f = _flag(ctx, fid)
    assert (f.level, f.tier) == ("red", "school")  # a teacher's concern starts at the school
    flags.acknowledge(ctx, a["counsellor"], fid)
    flags.assess(ctx, a["counsellor"], fid, "confirm")
    flags.refer(ctx, a["counsellor"], fid)
    flags.start_monitoring(ctx, a["counsellor"], fid)
    flags.close(ctx, a["head"], fid, "家长反馈稳定")
    assert _flag(ctx, fid).status == "close_requested"
    with pytest.raises(Forbidden):
        flags.review_close(ctx, a["head"], fid, True)
    with pytest.raises(ValidationFailed):
        flags.review_close(ctx, a["counsellor"], fid, False)
    flags.review_close(ctx, a["counsellor"], fid, True)
    assert _flag(ctx, fid).status == "closed"
    with pytest.raises(InvalidTransition):
        flags.acknowledge(ctx, a["counsellor"], fid)


def test_scope_out_of_school_and_county_is_not_found(ctx, world):
    a = world.actors
    fid = concerns.submit_concern(ctx, a["head"], student_id=world.students[3], category="mood",
                                  urgency="routine", note="")["flag_id"]
    for who in ("counsellor2", "county2", "head2", "monitor", "admin", "county", "city", "leader"):
        with pytest.raises(NotFound):
            flags.get_flag(ctx, a[who], fid)
    with pytest.raises(NotFound):
        flags.acknowledge(ctx, a["counsellor2"], fid)
    assert flags.get_flag(ctx, a["counsellor"], fid)["level"] == "yellow"
    with pytest.raises(NotFound):
        flags.get_flag(ctx, a["counsellor"], uuid.uuid4())


def test_evidence_attaches_and_level_only_rises(ctx, world):
    a = world.actors
    sid = world.students[4]
    first = concerns.submit_concern(ctx, a["head"], student_id=sid, category="mood", urgency="soon", note="")
    second = concerns.submit_concern(ctx, a["counsellor"], student_id=sid, category="mood", urgency="routine",
                                     note="")
    assert first["flag_id"] == second["flag_id"]
    assert _flag(ctx, first["flag_id"]).level == "orange"
    third = concerns.submit_concern(ctx, a["head"], student_id=sid, category="self_harm", urgency="immediate",
                                    note="")
    f = _flag(ctx, third["flag_id"])
    assert third["flag_id"] == first["flag_id"] and f.level == "red"
    assert f.county_informed_at is not None  # red: county told at once
    with ctx.uow() as uow:
        n_open = uow.session.scalar(sa.select(sa.func.count()).select_from(Flag)
                                    .where(Flag.student_id == sid, Flag.status != "closed"))
    assert n_open == 1
    # the county officer sees the red flag at once; the evidence stays with the counsellor
    assert "evidence" not in flags.get_flag(ctx, a["county"], f.id)
    assert len(flags.get_flag(ctx, a["counsellor"], f.id)["evidence"]) == 3


def test_red_flag_unacknowledged_for_an_hour_reaches_county_and_its_queue(ctx, world):
    from mh_platform.services import queues

    a = world.actors
    fid = concerns.submit_concern(ctx, a["head"], student_id=world.students[5], category="self_harm",
                                  urgency="immediate", note="")["flag_id"]
    assert escalation.sweep(ctx, ctx.now())["escalated"] == []
    ctx.clock.advance(minutes=61)
    res = escalation.sweep(ctx, ctx.now())
    assert res["escalated"] == [{"flag": str(fid), "from_tier": "school", "to_tier": "county", "level": "red"}]
    assert escalation.sweep(ctx, ctx.now())["escalated"] == []  # exactly once per missed deadline
    assert _flag(ctx, fid).tier == "county"
    q = queues.queue_for(ctx, a["county"])
    assert str(fid) in [f["id"] for f in q["escalated"]]
    # the next missed hour moves it to the city
    ctx.clock.advance(minutes=61)
    res = escalation.sweep(ctx, ctx.now())
    assert [e["to_tier"] for e in res["escalated"]] == ["city"]
    assert str(fid) in [f["id"] for f in queues.queue_for(ctx, a["city"])["escalated"]]


def test_watch_flag_is_yellow_and_never_leaves_school(ctx, world):
    a = world.actors
    out = flags.raise_watch(ctx, a["counsellor"], world.students2[0], WatchSignal(True, 0.31, "m1"))
    f = _flag(ctx, out.flag_id)
    assert (f.level, f.tier, f.is_watch) == ("yellow", "school", True)
    assert flags.raise_watch(ctx, a["counsellor"], world.students2[1], WatchSignal(False)) is None
    for _ in range(4):
        ctx.clock.advance(days=8)
        escalation.sweep(ctx, ctx.now())
    assert _flag(ctx, out.flag_id).tier == "school"
    with pytest.raises(InvalidTransition):
        flags.escalate(ctx, a["counsellor"], out.flag_id, "想上报")


def test_cluster_alert_once_per_class_window(ctx, world):
    a = world.actors
    for i in range(4):
        concerns.submit_concern(ctx, a["head"], student_id=world.students[i], category="mood", urgency="soon",
                                note="")
    alerts = fetch(ctx, sa.select(ClusterAlert))
    county_notes = fetch(ctx, sa.select(Outbox).where(Outbox.template == "cluster_alert",
                                                      Outbox.recipient_user_id == a["county"].user_id))
    assert [(x.scope, x.flag_count) for x in alerts] == [("class", 3)]
    assert {r.channel for r in county_notes} == {"inbox", "email"}
    assert escalation.list_clusters(ctx, a["county"])[0]["suggestion"] == "targeted_rescreening"
    assert escalation.list_clusters(ctx, a["county2"]) == []




def _campaign_response(ctx, world, student_id, *, days_ago: int, answers: dict, name: str):
    """A submitted PHQ-9 ``days_ago`` in a closed campaign of its own, through the flag path."""
    from datetime import timedelta

    return flag_phq9(ctx, student_id, world.school.id, answers, name, at=ctx.now() - timedelta(days=days_ago),
                     status="closed")


def test_screening_critical_item_and_reliable_deterioration(ctx, world):
    sid, sid2 = world.students[0], world.students[1]
    base = {str(i): 0 for i in range(1, 10)}
    # a previous screening, minimal (3): no flag
    assert _campaign_response(ctx, world, sid, days_ago=90, answers={**base, "1": 1, "2": 1, "3": 1},
                              name="秋季") is None
    # now mild (9): +6 >= RC 6 and a band crossing → reliable deterioration, yellow, at the school
    out = _campaign_response(ctx, world, sid, days_ago=0, name="春季",
                             answers={**base, "1": 2, "2": 2, "3": 2, "4": 1, "5": 1, "6": 1})
    assert out is not None and out.created
    f = _flag(ctx, out.flag_id)
    assert (f.level, f.tier) == ("yellow", "school")
    ev = flags.get_flag(ctx, world.actors["counsellor"], f.id)["evidence"]
    assert [e["source"] for e in ev] == ["deterioration"] and ev[0]["detail"]["to_band"] == "mild"
    # a smaller rise (+5) is not reliable: no flag for the second student
    assert _campaign_response(ctx, world, sid2, days_ago=90, answers={**base, "1": 1, "2": 1, "3": 1},
                              name="秋季2") is None
    assert _campaign_response(ctx, world, sid2, days_ago=0, name="春季2",
                              answers={**base, "1": 2, "2": 2, "3": 2, "4": 1, "5": 1}) is None
    # item 9 answered > 0 → red (critical), at the school, county informed at once
    crit = _campaign_response(ctx, world, sid2, days_ago=0, name="复测", answers={**base, "9": 1})
    f2 = _flag(ctx, crit.flag_id)
    assert (f2.level, f2.tier) == ("red", "school") and f2.county_informed_at is not None
    head_view = flags.get_flag(ctx, world.actors["head"], f2.id)
    assert "evidence" not in head_view and "total" not in str(head_view)


def test_red_flag_open_over_48h_is_reported_to_the_city_once(ctx, world):
    from mh_platform.services import queues

    a = world.actors
    fid = concerns.submit_concern(ctx, a["head"], student_id=world.students[3], category="self_harm",
                                  urgency="immediate", note="")["flag_id"]
    flags.acknowledge(ctx, a["counsellor"], fid)
    flags.assess(ctx, a["counsellor"], fid, "confirm")  # handled: no deadline runs any more
    with pytest.raises(NotFound):
        flags.get_flag(ctx, a["city"], fid)
    ctx.clock.advance(hours=47)
    assert escalation.sweep(ctx, ctx.now())["reported"] == 0
    ctx.clock.advance(hours=2)
    assert escalation.sweep(ctx, ctx.now())["reported"] == 1
    assert escalation.sweep(ctx, ctx.now())["reported"] == 0
    f = _flag(ctx, fid)
    assert f.city_informed_at is not None and f.tier == "school"
    assert str(fid) in [v["id"] for v in queues.queue_for(ctx, a["city"])["oversight"]]
    notes = fetch(ctx, sa.select(Outbox).where(Outbox.recipient_user_id == a["city"].user_id,
                                               Outbox.template == "flag_oversight"))
    assert {n.channel for n in notes} == {"inbox", "email"}


def test_concern_note_is_readable_by_reviewers_and_logged(ctx):
    """What a monitor saw reaches the head teacher and counsellor on request (access-logged); never others."""
    import sqlalchemy as sa

    from mh_platform.core.types import Role
    from mh_platform.db.models import AccessLog
    from mh_platform.services import concerns as concern_service
    from mh_platform.services import flags as flag_service
    from mh_platform.services import students_read  # noqa: F401 - app wiring parity
    from tests.integration.test_key_ops import seed_students

    seed_students(ctx, 3)
    from mh_platform.db.models import OrgUnit, Student
    from mh_platform.services.auth import actor_for_user, create_user
    from mh_platform.services.context import SYSTEM

    with ctx.uow() as uow:
        cls = uow.session.scalar(sa.select(OrgUnit.id).where(OrgUnit.kind == "class"))
        school = uow.session.scalar(sa.select(OrgUnit.id).where(OrgUnit.kind == "school"))
        sid = uow.session.scalar(sa.select(Student.id).limit(1))
    ids = {r: create_user(ctx, SYSTEM, username=f"u.{r.value}", password="correct horse 1", role=r,
                          unit_id=cls if r in (Role.HEAD_TEACHER, Role.CLASS_MONITOR) else school)
           for r in (Role.HEAD_TEACHER, Role.COUNSELLOR, Role.SCHOOL_LEADER, Role.CLASS_MONITOR)}
    with ctx.uow() as uow:
        from mh_platform.db.models import User
        actors = {r: actor_for_user(uow.session, uow.session.get(User, i)) for r, i in ids.items()}
    out = concern_service.submit_concern(ctx, actors[Role.CLASS_MONITOR], student_id=sid, category="withdrawal",
                                         urgency="soon", note="他最近总是一个人坐着哭")
    flag_id = out["flag_id"] if isinstance(out, dict) else out.flag_id
    for role in (Role.HEAD_TEACHER, Role.COUNSELLOR):
        before = _count(ctx, AccessLog)
        view = flag_service.get_flag(ctx, actors[role], flag_id, reveal_reasons=True)
        assert [c["note"] for c in view["concerns"]] == ["他最近总是一个人坐着哭"]
        assert _count(ctx, AccessLog) == before + 1
        assert "concerns" not in flag_service.get_flag(ctx, actors[role], flag_id)  # only on request


def test_a_head_teacher_reads_the_class_tier_concern_notes_not_a_counsellors(ctx, world):
    """SECURITY.md: concern notes are read by the head teacher who reviews class-tier concerns. A
    counsellor's concern on the same flag starts at the school tier and may hold clinical detail."""
    a = world.actors
    out = concerns.submit_concern(ctx, a["monitor"], student_id=world.students[1], category="withdrawal",
                                  urgency="soon", note="课间总是一个人")
    concerns.submit_concern(ctx, a["counsellor"], student_id=world.students[1], category="self_harm",
                            urgency="immediate", note="访谈中提到想从楼上跳下去")
    concerns.submit_concern(ctx, a["head"], student_id=world.students[1], category="mood", urgency="soon",
                            note="上课时情绪很低落")
    head = flags.get_flag(ctx, a["head"], out["flag_id"], reveal_reasons=True)
    assert [c["note"] for c in head["concerns"]] == ["课间总是一个人", "上课时情绪很低落"]
    assert "跳" not in repr(head)
    counsellor = flags.get_flag(ctx, a["counsellor"], out["flag_id"], reveal_reasons=True)
    assert [c["note"] for c in counsellor["concerns"]] == ["课间总是一个人", "访谈中提到想从楼上跳下去", "上课时情绪很低落"]


def _count(ctx, model):
    import sqlalchemy as sa

    with ctx.uow() as uow:
        return uow.session.scalar(sa.select(sa.func.count()).select_from(model))
