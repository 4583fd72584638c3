"""A flag always reaches someone who can act on it.

A — a student who moves class or school takes their open flag along (``flags.follow_enrolment``):
the new school's counsellor holds it, with fresh clocks, and the old school no longer reaches it.
B — a tier with nobody in its acting role hands the flag up at once to the next tier that has
someone (``flags.reach``), the fallback is audited with codes only, and an administrator can list
the units missing a role (``coverage.units_missing_roles``, ``mhp users missing-roles``).
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flags_world import PASSWORD, build_world, flag_phq9, quick_hashes, world  # noqa: F401 - fixtures

from mh_platform.core.errors import Forbidden, NotFound
from mh_platform.core.types import Role
from mh_platform.db.models import (
    AcademicYear,
    Enrolment,
    EventLog,
    Flag,
    FlagEvent,
    FlagEvidence,
    OrgUnit,
    Outbox,
    Student,
    User,
)
from mh_platform.services import auth, concerns, coverage, escalation, flags, queues, students
from mh_platform.services.context import SYSTEM, Actor

ZERO = {str(i): 0 for i in range(1, 10)}
MODERATE = {**ZERO, "1": 2, "2": 2, "3": 2, "4": 2, "5": 2}  # 10: yellow
MOD_SEVERE = {**ZERO, "1": 3, "2": 3, "3": 3, "4": 3, "5": 3}  # 15: orange


def _flag(ctx, fid) -> Flag:
    with ctx.uow() as uow:
        f = uow.session.get(Flag, uuid.UUID(str(fid)))
        uow.session.expunge(f)
        return f


def _rows(ctx, stmt) -> list:
    with ctx.uow() as uow:
        out = list(uow.session.scalars(stmt).all())
        uow.session.expunge_all()
        return out


def _told(ctx, actor: Actor) -> list[Outbox]:
    return _rows(ctx, sa.select(Outbox).where(Outbox.recipient_user_id == actor.user_id))


def _events(ctx, fid) -> list[FlagEvent]:
    return _rows(ctx, sa.select(FlagEvent).where(FlagEvent.flag_id == uuid.UUID(str(fid))).order_by(FlagEvent.at))


def _audit(ctx, kind: str) -> list[EventLog]:
    return _rows(ctx, sa.select(EventLog).where(EventLog.kind == kind).order_by(EventLog.id))


def _user(ctx, username: str, role: Role, unit_id: uuid.UUID | None) -> Actor:
    uid = auth.create_user(ctx, SYSTEM, username=username, password=PASSWORD, role=role, unit_id=unit_id,
                           email=f"{username}@school.example")
    with ctx.uow() as uow:
        return auth.actor_for_user(uow.session, uow.session.get(User, uid))


def _deactivate(ctx, actor: Actor) -> None:
    with ctx.uow() as uow:
        uow.session.get(User, actor.user_id).is_active = False
        uow.commit()




def _move(ctx, student_id, klass: OrgUnit) -> None:
    with ctx.uow() as uow:
        s = uow.session
        year = s.scalar(sa.select(AcademicYear))
        students.enrol(s, s.get(Student, student_id), s.get(OrgUnit, klass.id), year, ctx.now(), ctx)
        uow.commit()


# =========================================================================== A: the flag follows the student


def test_a_flag_moves_with_a_student_who_changes_school(ctx, world):
    a = world.actors
    sid = world.students[3]
    fid = concerns.submit_concern(ctx, a["head"], student_id=sid, category="mood", urgency="soon", note="")["flag_id"]
    flags.acknowledge(ctx, a["counsellor"], fid)
    ctx.clock.advance(days=30)  # long past the first clocks; escalated to the county meanwhile
    escalation.sweep(ctx, ctx.now())
    assert _flag(ctx, fid).tier == "county"
    before2 = len(_told(ctx, a["counsellor2"]))

    _move(ctx, sid, world.klass_other)

    f = _flag(ctx, fid)
    now = ctx.now()
    assert (f.school_unit_id, f.class_unit_id, f.unit_path) == (world.school2.id, world.klass_other.id,
                                                                 world.klass_other.path)
    # restarts at the new school: raised at the school tier, fresh clocks, no owner from the old school
    assert (f.tier, f.status, f.level) == ("school", "raised", "orange")
    assert (f.tier_entered_at, f.ack_due_at, f.handle_due_at) == (now, now + timedelta(hours=24),
                                                                  now + timedelta(hours=72))
    assert f.owner_user_id is None and f.acknowledged_at is None
    ev = _events(ctx, fid)[-1]
    assert (ev.kind, ev.reason_code, ev.from_tier, ev.to_tier, ev.from_status, ev.to_status) == \
        ("flag:transferred", "student_transferred", "county", "school", "acknowledged", "raised")
    entry = [e for e in _audit(ctx, "flag:transferred") if e.object_id == str(fid)]
    assert len(entry) == 1
    assert entry[0].data["from_school"] == str(world.school.id) and entry[0].data["to_school"] == str(world.school2.id)
    assert "name" not in json.dumps(entry[0].data)
    # the new school's counsellor is told at once, with a link to the flag and no names
    told = _told(ctx, a["counsellor2"])
    assert len(told) > before2
    assert {r.params["link"] for r in told[before2:]} == {f"/flags/{fid}"}
    assert {r.params["unit"] for r in told[before2:]} == {world.school2.name}
    # the new counsellor sees the flag and its evidence; the old school no longer reaches it
    view = flags.get_flag(ctx, a["counsellor2"], fid)
    assert view["school"]["id"] == str(world.school2.id) and "evidence" in view
    for old in ("counsellor", "head", "leader"):
        with pytest.raises(NotFound):
            flags.get_flag(ctx, a[old], fid)
    assert fid not in [v["id"] for v in flags.list_flags(ctx, a["counsellor"])[0]]
    # and it runs on: the new counsellor acknowledges it
    assert flags.acknowledge(ctx, a["counsellor2"], fid)["status"] == "acknowledged"


def test_new_evidence_after_a_move_attaches_at_the_new_school(ctx, world):
    """The reviewer's case: an open yellow flag at school 1, the student moves to school 2 and answers
    PHQ-9 item 9 = 3 there — a red flag at school 2, told to school 2's counsellor and the county."""
    a = world.actors
    sid = world.students[3]
    fid = concerns.submit_concern(ctx, a["head"], student_id=sid, category="mood", urgency="routine",
                                  note="")["flag_id"]
    ctx.clock.advance(days=30)
    _move(ctx, sid, world.klass_other)
    before = len(_told(ctx, a["counsellor2"]))
    out = flag_phq9(ctx, sid, world.school2.id, {**ZERO, "9": 3}, "新学校普测")
    assert str(out.flag_id) == fid
    f = _flag(ctx, fid)
    assert (f.school_unit_id, f.level, f.tier) == (world.school2.id, "red", "school")
    assert len(_told(ctx, a["counsellor2"])) > before
    assert fid in [v["id"] for v in flags.list_flags(ctx, a["counsellor2"])[0]]
    assert [r for r in _told(ctx, a["county"]) if r.template == "flag_oversight"]


def test_open_or_attach_moves_a_flag_left_behind_before_attaching(ctx, world):
    """Defence in depth: an enrolment changed without ``enrol`` (a direct data fix) — the next evidence
    first moves the flag to the student's current school, then attaches."""
    a = world.actors
    sid = world.students[3]
    fid = concerns.submit_concern(ctx, a["head"], student_id=sid, category="mood", urgency="routine",
                                  note="")["flag_id"]
    with ctx.uow() as uow:
        e = uow.session.scalar(sa.select(Enrolment).where(Enrolment.student_id == sid, Enrolment.active.is_(True)))
        e.class_unit_id, e.school_unit_id, e.unit_path = world.klass_other.id, world.school2.id, world.klass_other.path
        uow.commit()
    out = flag_phq9(ctx, sid, world.school2.id, {**ZERO, "9": 3}, "新学校普测")
    f = _flag(ctx, out.flag_id)
    assert str(f.id) == fid and f.school_unit_id == world.school2.id and f.level == "red"
    kinds = [(e.kind, e.reason_code) for e in _events(ctx, fid)]
    assert kinds.index(("flag:transferred", "student_transferred")) < kinds.index(("flag:level_raised", "evidence"))
    assert _told(ctx, a["counsellor2"])
    with ctx.uow() as uow:  # the evidence sits on the moved flag
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(FlagEvidence)
                                  .where(FlagEvidence.flag_id == f.id, FlagEvidence.source == "critical")) == 1


def test_a_red_flag_moving_to_another_county_is_reported_to_the_new_county(ctx, world):
    a = world.actors
    _user(ctx, "t.counsellor3", Role.COUNSELLOR, world.school3.id)
    sid = world.students[2]
    out = flag_phq9(ctx, sid, world.school.id, {**ZERO, "9": 3}, "普测")
    f = _flag(ctx, out.flag_id)
    assert f.level == "red" and f.county_informed_at is not None
    assert not [r for r in _told(ctx, a["county2"])]
    ctx.clock.advance(hours=3)
    _move(ctx, sid, world.klass3)
    f = _flag(ctx, out.flag_id)
    assert f.school_unit_id == world.school3.id and f.county_informed_at == ctx.now()
    assert [r.template for r in _told(ctx, a["county2"])] and \
        {r.template for r in _told(ctx, a["county2"])} == {"flag_oversight"}
    assert flags.get_flag(ctx, a["county2"], out.flag_id)["school"]["id"] == str(world.school3.id)
    with pytest.raises(NotFound):
        flags.get_flag(ctx, a["county"], out.flag_id)


def test_a_class_change_in_the_same_school_moves_the_flag_to_the_new_head_teacher(ctx, world):
    a = world.actors
    sid = world.students[1]
    fid = concerns.submit_concern(ctx, a["monitor"], student_id=sid, category="mood", urgency="routine",
                                  note="")["flag_id"]
    f0 = _flag(ctx, fid)
    assert f0.tier == "class"
    ctx.clock.advance(hours=5)
    _move(ctx, sid, world.klass2)
    f = _flag(ctx, fid)
    assert (f.school_unit_id, f.class_unit_id, f.unit_path) == (world.school.id, world.klass2.id, world.klass2.path)
    assert (f.tier, f.status, f.ack_due_at) == ("class", "raised", f0.ack_due_at)  # same school: clocks run on
    ev = _events(ctx, fid)[-1]
    assert (ev.kind, ev.reason_code) == ("flag:transferred", "student_moved_class")
    assert [r for r in _told(ctx, a["head2"]) if r.params["link"] == f"/flags/{fid}"]
    assert flags.get_flag(ctx, a["head2"], fid)["class"]["id"] == str(world.klass2.id)
    with pytest.raises(NotFound):
        flags.get_flag(ctx, a["head"], fid)
    assert flags.get_flag(ctx, a["counsellor"], fid)["id"] == fid


def test_a_move_without_an_open_flag_or_to_the_same_class_changes_no_flag(ctx, world):
    a = world.actors
    sid = world.students[1]
    fid = concerns.submit_concern(ctx, a["head"], student_id=sid, category="mood", urgency="routine",
                                  note="")["flag_id"]
    n = len(_events(ctx, fid))
    _move(ctx, sid, world.klass)  # the same class again
    assert len(_events(ctx, fid)) == n
    _move(ctx, world.students[5], world.klass_other)  # no flag at all: nothing to move
    assert _rows(ctx, sa.select(Flag).where(Flag.student_id == world.students[5])) == []


def test_roster_reimport_moving_a_student_moves_their_flag(ctx):
    import screening_world as sw

    from mh_platform.services import roster

    w = sw.build_world(ctx)
    rows = sw.roster_rows(classes=2, per_class=3)
    roster.commit(ctx, w.counsellor, sw.to_csv(rows), "a.csv")
    k1, k2 = sw.class_units(ctx, w.school)
    head2 = sw.make_user(ctx, "t.head2", Role.HEAD_TEACHER, k2.id)
    with ctx.uow() as uow:
        sid = uow.session.scalar(sa.select(Enrolment.student_id).where(Enrolment.class_unit_id == k1.id)
                                 .order_by(Enrolment.student_id).limit(1))
    fid = concerns.submit_concern(ctx, w.counsellor, student_id=sid, category="mood", urgency="soon",
                                  note="")["flag_id"]
    with ctx.uow() as uow:
        st = uow.session.get(Student, sid)
        num = ctx.keyring.open_field(uow.session, st.student_number_enc, table="student",
                                     column="student_number_enc", row_id=sid)
    rows2 = [list(r) for r in rows]
    for r in rows2:
        if r[3] == num:
            r[2] = "2班"
    roster.commit(ctx, w.counsellor, sw.to_csv(rows2), "b.csv")
    f = _flag(ctx, fid)
    assert (f.class_unit_id, f.unit_path) == (k2.id, k2.path)
    assert _events(ctx, fid)[-1].reason_code == "student_moved_class"
    # a school-tier flag stays with the same counsellor; the new class's head teacher now sees it
    assert flags.get_flag(ctx, head2, fid)["class"]["id"] == str(k2.id)
    assert flags.get_flag(ctx, w.counsellor, fid)["tier"] == "school"


# =========================================================================== B: nobody at a tier


def test_yellow_flag_in_a_school_without_counsellor_goes_to_the_county_at_once(ctx, world):
    a = world.actors
    sid = world.students3[0]
    out = flag_phq9(ctx, sid, world.school3.id, MODERATE, "普测")
    f = _flag(ctx, out.flag_id)
    assert (f.level, f.tier, f.status) == ("yellow", "county", "raised")
    now = ctx.now()
    assert (f.tier_entered_at, f.ack_due_at) == (now, now + timedelta(hours=72))
    ev = _events(ctx, out.flag_id)
    assert [(e.kind, e.reason_code, e.from_tier, e.to_tier) for e in ev] == [
        ("flag:raised", "screening", None, "school"), ("flag:escalated", "no_recipient", "school", "county")]
    miss = _audit(ctx, "notify:no_recipient")
    assert {(m.object_type, m.object_id, m.data["role"]) for m in miss} >= {
        ("org_unit", str(world.school3.id), "counsellor")}
    assert all(set(m.data) <= {"role", "tier", "flag", "template"} for m in miss)
    # the county officer is told at once, can open the flag the notice links to, and has it in the queue
    told = _told(ctx, a["county2"])
    assert told and {r.params["link"] for r in told} == {f"/flags/{out.flag_id}"}
    view = flags.get_flag(ctx, a["county2"], out.flag_id)
    assert "acknowledge" in view["actions"]
    assert str(out.flag_id) in [v["id"] for v in queues.queue_for(ctx, a["county2"])["escalated"]]
    # not the other county
    with pytest.raises(NotFound):
        flags.get_flag(ctx, a["county"], out.flag_id)
    # the sweep keeps reminding the county, never silent
    n = len(_told(ctx, a["county2"]))
    for _ in range(3):
        ctx.clock.advance(days=8)
        escalation.sweep(ctx, ctx.now())
    f = _flag(ctx, out.flag_id)
    assert f.tier == "county"
    assert len(_told(ctx, a["county2"])) >= n + 3


def test_orange_flag_in_a_school_without_counsellor_is_told_at_once(ctx, world):
    out = flag_phq9(ctx, world.students3[1], world.school3.id, MOD_SEVERE, "普测")
    f = _flag(ctx, out.flag_id)
    assert (f.level, f.tier) == ("orange", "county")
    assert {r.template for r in _told(ctx, world.actors["county2"])} == {"flag_needs_action"}
    assert out.outbox_ids


def test_monitor_concern_in_a_class_without_head_teacher_goes_to_the_counsellor(ctx, world):
    a = world.actors
    monitor = _user(ctx, "t.monitor2", Role.CLASS_MONITOR, world.klass_other.id)
    sid = world.students_other[1]
    out = concerns.submit_concern(ctx, monitor, student_id=sid, category="mood", urgency="routine", note="")
    f = _flag(ctx, out["flag_id"])
    assert f.tier == "school"
    assert [r for r in _told(ctx, a["counsellor2"]) if r.params["link"] == f"/flags/{out['flag_id']}"]
    assert flags.get_flag(ctx, a["counsellor2"], out["flag_id"])["tier"] == "school"
    assert any(m.object_id == str(world.klass_other.id) and m.data["role"] == "head_teacher"
               for m in _audit(ctx, "notify:no_recipient"))


def test_sweep_hands_a_flag_up_when_the_counsellor_left(ctx, world):
    """The counsellor is deactivated after the flag was raised: the next missed deadline goes to the
    county (the yellow reminder at the school tier reaches nobody there)."""
    a = world.actors
    # a second flag in another school keeps the batch fast path honest
    other = flag_phq9(ctx, world.students2[0], world.school.id, MODERATE, "普测")
    _user(ctx, "t.counsellor3", Role.COUNSELLOR, world.school3.id)
    out = flag_phq9(ctx, world.students3[0], world.school3.id, MODERATE, "普测")
    assert _flag(ctx, out.flag_id).tier == "school"
    _deactivate(ctx, _user_actor(ctx, "t.counsellor3"))
    ctx.clock.advance(days=4)
    escalation.sweep(ctx, ctx.now())
    f = _flag(ctx, out.flag_id)
    assert f.tier == "county" and f.ack_due_at == ctx.now() + timedelta(hours=72)
    assert [(e.kind, e.reason_code) for e in _events(ctx, out.flag_id)][-2:] == [
        ("flag:reminded", "missed_ack"), ("flag:escalated", "no_recipient")]
    assert [r for r in _told(ctx, a["county2"]) if r.params["link"] == f"/flags/{out.flag_id}"]
    assert flags.get_flag(ctx, a["county2"], out.flag_id)["tier"] == "county"
    assert _flag(ctx, other.flag_id).tier == "school"  # the staffed school's flag: an ordinary reminder


def _user_actor(ctx, username: str) -> Actor:
    with ctx.uow() as uow:
        return auth.actor_for_user(uow.session, uow.session.scalar(sa.select(User).where(User.username == username)))


def test_red_flag_with_no_county_officer_is_reported_to_the_city_who_can_open_it(ctx, world):
    a = world.actors
    _user(ctx, "t.counsellor3", Role.COUNSELLOR, world.school3.id)
    _deactivate(ctx, a["county2"])
    out = flag_phq9(ctx, world.students3[2], world.school3.id, {**ZERO, "9": 3}, "普测")
    f = _flag(ctx, out.flag_id)
    assert (f.level, f.tier) == ("red", "school")
    assert f.city_informed_at == ctx.now()
    assert {r.template for r in _told(ctx, a["city"])} == {"flag_oversight"}
    assert flags.get_flag(ctx, a["city"], out.flag_id)["id"] == str(out.flag_id)
    assert any(m.object_id == str(world.county2.id) and m.data["role"] == "county_officer"
               for m in _audit(ctx, "notify:no_recipient"))


def test_nobody_up_to_the_county_sends_the_flag_to_the_city(ctx, world):
    a = world.actors
    _deactivate(ctx, a["county2"])
    out = flag_phq9(ctx, world.students3[3], world.school3.id, MOD_SEVERE, "普测")
    f = _flag(ctx, out.flag_id)
    assert f.tier == "city"
    assert [r for r in _told(ctx, a["city"]) if r.template == "flag_needs_action"]
    assert "acknowledge" in flags.get_flag(ctx, a["city"], out.flag_id)["actions"]


def test_a_move_to_a_school_without_counsellor_reaches_the_county(ctx, world):
    a = world.actors
    sid = world.students[3]
    fid = concerns.submit_concern(ctx, a["head"], student_id=sid, category="mood", urgency="routine",
                                  note="")["flag_id"]
    _move(ctx, sid, world.klass3)
    f = _flag(ctx, fid)
    assert (f.school_unit_id, f.tier) == (world.school3.id, "county")
    assert [r for r in _told(ctx, a["county2"]) if r.params["link"] == f"/flags/{fid}"]


# =========================================================================== the report


def test_units_missing_a_required_role_are_listed_for_the_administrator(ctx, world):
    a = world.actors
    rows = coverage.units_missing_roles(ctx, a["admin"])
    got = {(r["unit_id"], r["missing_role"]) for r in rows}
    assert (str(world.school3.id), "counsellor") in got
    assert (str(world.klass_other.id), "head_teacher") in got
    assert (str(world.klass3.id), "head_teacher") in got
    assert (str(world.school.id), "counsellor") not in got and (str(world.klass.id), "head_teacher") not in got
    assert not any(r["unit_id"] == str(world.county.id) for r in rows)
    assert set(rows[0]) == {"unit_id", "unit", "kind", "code", "missing_role"}
    _deactivate(ctx, a["county2"])
    assert (str(world.county2.id), "county_officer") in {(r["unit_id"], r["missing_role"])
                                                          for r in coverage.units_missing_roles(ctx, a["admin"])}
    for who in ("counsellor", "head", "monitor"):
        with pytest.raises(Forbidden):
            coverage.units_missing_roles(ctx, a[who])


def test_missing_roles_cli(ctx, world, monkeypatch):
    from click.testing import CliRunner

    from mh_platform.cli import users as users_cli

    monkeypatch.setattr(users_cli, "make_ctx", lambda *a, **k: ctx)
    res = CliRunner().invoke(users_cli.cli, ["missing-roles", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert {"unit_id": str(world.school3.id), "unit": world.school3.name, "kind": "school",
            "code": world.school3.code, "missing_role": "counsellor"} in data
