"""How the flag rules meet: a start-tier move into a tier nobody staffs, re-triage of a flag handed
up, a transfer of an escalated flag, the sweep on moved flags, a level reached a second time and a
watch-only flag a person confirms — each must end with someone able to act, told once."""
from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flags_world import PASSWORD, flag_phq9, quick_hashes, stored_phq9, world  # noqa: F401

from mh_platform.core import flag_rules as fr
from mh_platform.core.errors import NotFound
from mh_platform.core.types import Role
from mh_platform.db.models import AcademicYear, ClusterAlert, Flag, FlagEvent, OrgUnit, Outbox, Student, User
from mh_platform.services import auth, concerns, escalation, flags, students
from mh_platform.services.context import SYSTEM

ZERO = {str(i): 0 for i in range(1, 10)}
MODERATE = {**ZERO, "1": 2, "2": 2, "3": 2, "4": 2, "5": 2}  # yellow
MOD_SEVERE = {**ZERO, "1": 3, "2": 3, "3": 3, "4": 3, "5": 3}  # orange
SEVERE = {**ZERO, "1": 3, "2": 3, "3": 3, "4": 3, "5": 3, "6": 3, "7": 3}  # 21: red


def _flag(ctx, fid):
    with ctx.uow() as uow:
        f = uow.session.get(Flag, uuid.UUID(str(fid)))
        uow.session.expunge(f)
        return f


def _events(ctx, fid):
    with ctx.uow() as uow:
        rows = list(uow.session.scalars(sa.select(FlagEvent).where(FlagEvent.flag_id == uuid.UUID(str(fid)))
                                        .order_by(FlagEvent.seq)))
        uow.session.expunge_all()
        return [(e.kind, e.reason_code, e.from_tier, e.to_tier, e.to_status) for e in rows]


def _told(ctx, actor, fid=None):
    with ctx.uow() as uow:
        q = sa.select(Outbox).where(Outbox.recipient_user_id == actor.user_id, Outbox.channel == "inbox")
        rows = list(uow.session.scalars(q))
        uow.session.expunge_all()
    if fid is not None:
        rows = [r for r in rows if r.params.get("link") == f"/flags/{fid}"]
    return rows


def _user(ctx, username, role, unit_id, student_id=None):
    uid = auth.create_user(ctx, SYSTEM, username=username, password=PASSWORD, role=role, unit_id=unit_id,
                           email=None if role == Role.CLASS_MONITOR else f"{username}@school.example",
                           student_id=student_id)
    with ctx.uow() as uow:
        return auth.actor_for_user(uow.session, uow.session.get(User, uid))


def _move(ctx, sid, klass):
    with ctx.uow() as uow:
        s = uow.session
        year = s.scalar(sa.select(AcademicYear))
        students.enrol(s, s.get(Student, sid), s.get(OrgUnit, klass.id), year, ctx.now(), ctx)
        uow.commit()


# ---------------------------------------------------------------- Q1 start tier into an unstaffed school

def _class_flag_in_school3(ctx, world, sid):
    head3 = _user(ctx, "t.head3", Role.HEAD_TEACHER, world.klass3.id)
    mon3 = _user(ctx, "t.mon3", Role.CLASS_MONITOR, world.klass3.id, student_id=world.students3[5])
    fid = concerns.submit_concern(ctx, mon3, student_id=sid, category="mood", urgency="routine", note="")["flag_id"]
    assert _flag(ctx, fid).tier == "class"
    flags.acknowledge(ctx, head3, fid)
    return fid, head3


def test_start_tier_move_into_unstaffed_school_goes_to_county_once(ctx, world):
    a = world.actors
    sid = world.students3[0]
    fid, _head3 = _class_flag_in_school3(ctx, world, sid)
    ctx.clock.advance(hours=1)
    n0 = len(_told(ctx, a["county2"], fid))
    flag_phq9(ctx, sid, world.school3.id, MOD_SEVERE, "普测")
    f = _flag(ctx, fid)
    now = ctx.now()
    assert (f.level, f.tier, f.status, f.escalations) == ("orange", "county", "raised", 1)
    assert (f.tier_entered_at, f.ack_due_at, f.handle_due_at) == (now, now + timedelta(hours=24), now + timedelta(hours=72))
    assert set(_events(ctx, fid)[-2:]) == {("flag:escalated", "evidence_start_tier", "class", "school", "raised"),
                                           ("flag:escalated", "no_recipient", "school", "county", "raised")}
    assert len(_told(ctx, a["county2"], fid)) == n0 + 1
    # the sweep now has nothing to do; after 24 h one reminder at the county (orange ceiling)
    escalation.sweep(ctx, now)
    assert len(_events(ctx, fid)) == 4
    ctx.clock.advance(hours=25)
    escalation.sweep(ctx, ctx.now())
    escalation.sweep(ctx, ctx.now())
    assert [e[0] for e in _events(ctx, fid)].count("flag:reminded") == 1


def test_batch_path_same(ctx, world):
    a = world.actors
    sid = world.students3[0]
    fid, _head3 = _class_flag_in_school3(ctx, world, sid)
    ctx.clock.advance(hours=1)
    n0 = len(_told(ctx, a["county2"], fid))
    with ctx.uow() as uow:
        s = uow.session
        resp, result = stored_phq9(ctx, s, sid, world.school3.id, MOD_SEVERE, "纸质")
        batch = flags.FlagBatch()
        batch.prefetch(s, [sid])
        flags.raise_from_response(ctx, s, resp, result, now=ctx.now(), batch=batch)
        batch.finish(ctx, s, ctx.now())
        uow.commit()
    f = _flag(ctx, fid)
    assert (f.level, f.tier, f.status, f.escalations) == ("orange", "county", "raised", 1)
    assert set(_events(ctx, fid)[-2:]) == {("flag:escalated", "evidence_start_tier", "class", "school", "raised"),
                                           ("flag:escalated", "no_recipient", "school", "county", "raised")}
    assert len(_told(ctx, a["county2"], fid)) == n0 + 1


# ---------------------------------------------------------------- Q2 re-triage of a handed-up flag

def test_retriage_of_handed_up_flag_stays_at_county_and_county_is_told(ctx, world):
    a = world.actors
    sid = world.students3[1]
    head3 = _user(ctx, "t.head3", Role.HEAD_TEACHER, world.klass3.id)
    fid = flag_phq9(ctx, sid, world.school3.id, MOD_SEVERE, "普测").flag_id
    assert _flag(ctx, fid).tier == "county"
    flags.acknowledge(ctx, a["county2"], fid)
    ctx.clock.advance(hours=2)
    n0 = len(_told(ctx, a["county2"], fid))
    concerns.submit_concern(ctx, head3, student_id=sid, category="self_harm", urgency="soon", note="")
    f = _flag(ctx, fid)
    assert (f.tier, f.status) == ("county", "raised")
    assert _events(ctx, fid)[-1][:2] == ("flag:retriaged", "evidence_retriage")
    assert len(_told(ctx, a["county2"], fid)) == n0 + 1
    assert "acknowledge" in flags.get_flag(ctx, a["county2"], fid)["actions"]


# ---------------------------------------------------------------- level-keyed dedupe: second rise is silent

def test_level_rise_again_after_counsellor_lowered_it_is_told(ctx, world):
    a = world.actors
    sid = world.students[2]
    fid = flag_phq9(ctx, sid, world.school.id, MODERATE, "秋季").flag_id           # yellow
    ctx.clock.advance(days=1)
    flag_phq9(ctx, sid, world.school.id, MOD_SEVERE, "冬季")                        # -> orange (level:orange)
    flags.acknowledge(ctx, a["counsellor"], fid)
    flags.assess(ctx, a["counsellor"], fid, "change_level", new_level="yellow", reason="访谈后评估为轻度")
    flags.start_monitoring(ctx, a["counsellor"], fid)
    ctx.clock.advance(days=30)
    n0 = len(_told(ctx, a["counsellor"], fid))
    flag_phq9(ctx, sid, world.school.id, MOD_SEVERE, "春季")                        # -> orange again
    f = _flag(ctx, fid)
    assert (f.level, f.status) == ("orange", "raised")  # re-triaged: the counsellor must acknowledge again
    assert len(_told(ctx, a["counsellor"], fid)) == n0 + 1, "re-triaged flag, nobody told"


def test_red_again_after_lowered_is_told(ctx, world):
    a = world.actors
    sid = world.students[3]
    fid = concerns.submit_concern(ctx, a["head"], student_id=sid, category="mood", urgency="soon", note="")["flag_id"]
    ctx.clock.advance(hours=1)
    flag_phq9(ctx, sid, world.school.id, SEVERE, "秋季")                             # orange -> red (level:red)
    assert _flag(ctx, fid).level == "red"
    flags.acknowledge(ctx, a["counsellor"], fid)
    flags.assess(ctx, a["counsellor"], fid, "change_level", new_level="orange", reason="访谈后评估")
    flags.start_monitoring(ctx, a["counsellor"], fid)
    ctx.clock.advance(days=20)
    n0 = len(_told(ctx, a["counsellor"], fid))
    flag_phq9(ctx, sid, world.school.id, SEVERE, "春季")                             # -> red again
    f = _flag(ctx, fid)
    assert (f.level, f.status) == ("red", "raised")
    assert len(_told(ctx, a["counsellor"], fid)) == n0 + 1, "red re-triage, counsellor not told"


# ---------------------------------------------------------------- Q6 watch flag loses watch-only in unstaffed school

def test_watch_flag_confirmed_by_a_person_in_unstaffed_school_reaches_someone(ctx, world):
    a = world.actors
    sid = world.students3[2]
    head3 = _user(ctx, "t.head3", Role.HEAD_TEACHER, world.klass3.id)
    out = flags.raise_watch(ctx, SYSTEM, sid, fr.WatchSignal(watch=True, probability=0.9, model_version="m1"))
    fid = out.flag_id
    assert (_flag(ctx, fid).tier, _flag(ctx, fid).is_watch) == ("school", True)
    concerns.submit_concern(ctx, head3, student_id=sid, category="mood", urgency="routine", note="")
    f = _flag(ctx, fid)
    assert f.is_watch is False
    # no longer only the model: nobody holds the school's role, so it must be handed up now
    assert f.tier == "county", (f.tier, _events(ctx, fid))
    assert _told(ctx, a["county2"], fid)


# ---------------------------------------------------------------- Q3 transfer while close_requested at the county

def test_transfer_of_escalated_close_requested_flag_to_unstaffed_school(ctx, world):
    a = world.actors
    sid = world.students[4]
    fid = concerns.submit_concern(ctx, a["head"], student_id=sid, category="self_harm", urgency="immediate",
                                  note="")["flag_id"]
    ctx.clock.advance(hours=2)
    escalation.sweep(ctx, ctx.now())
    assert _flag(ctx, fid).tier == "county"
    flags.acknowledge(ctx, a["counsellor"], fid)
    flags.assess(ctx, a["counsellor"], fid, "confirm")
    flags.start_monitoring(ctx, a["counsellor"], fid)
    flags.close(ctx, a["head"], fid, "稳定")
    assert _flag(ctx, fid).status == "close_requested"
    n2 = len(_told(ctx, a["county2"], fid))
    _move(ctx, sid, world.klass3)
    f = _flag(ctx, fid)
    assert (f.tier, f.status, f.school_unit_id) == ("county", "raised", world.school3.id)
    assert f.county_informed_at is not None
    ev = _events(ctx, fid)
    assert set(ev) >= {("flag:transferred", "student_transferred", "county", "school", "raised"),
                            ("flag:escalated", "no_recipient", "school", "county", "raised")}
    told = _told(ctx, a["county2"], fid)
    assert len(told) >= n2 + 1
    for old in ("counsellor", "head", "leader", "county"):
        with pytest.raises(NotFound):
            flags.get_flag(ctx, a[old], fid)
    # sweep twice: one step per deadline
    ctx.clock.advance(hours=2)
    escalation.sweep(ctx, ctx.now())
    escalation.sweep(ctx, ctx.now())
    assert len(_events(ctx, fid)) == len(ev) + 1
    assert _flag(ctx, fid).tier == "city"


# ---------------------------------------------------------------- Q5 clusters and moved flags / dismissed flags

def _alerts(ctx, scope):
    with ctx.uow() as uow:
        rows = list(uow.session.scalars(sa.select(ClusterAlert).where(ClusterAlert.scope == scope)))
        uow.session.expunge_all()
    return {r.unit_id: r for r in rows}


def test_cluster_counts_a_moved_students_flag_in_the_class_it_was_opened_in(ctx, world):
    """docs/flags.md §6: a cluster is flags *opened* in one class within the window. A flag that moved
    with its student to another class still counts where it was opened, and not where it is now."""
    a = world.actors
    s0, s1, s2 = world.students[:3]
    flag_phq9(ctx, s0, world.school.id, MOD_SEVERE, "k-0")
    flag_phq9(ctx, s1, world.school.id, MOD_SEVERE, "k-1")
    _move(ctx, s0, world.klass2)  # same school; the flag follows the student to 七年级2班
    ctx.clock.advance(days=1)
    flag_phq9(ctx, world.students2[0], world.school.id, MOD_SEVERE, "k2-0")
    flag_phq9(ctx, world.students2[1], world.school.id, MOD_SEVERE, "k2-1")
    assert world.klass2.id not in _alerts(ctx, "class"), "two flags opened in 七年级2班 made a class alert"
    third = flag_phq9(ctx, s2, world.school.id, MOD_SEVERE, "k-2").flag_id  # the third opened in 七年级1班
    alert = _alerts(ctx, "class").get(world.klass.id)
    assert alert is not None and alert.flag_count == 3
    page = escalation.get_cluster(ctx, a["counsellor"], alert.id)
    assert len(page["flags"]) == 3 and str(third) in {f["id"] for f in page["flags"]}


def test_cluster_counts_a_flag_moved_to_another_school_at_the_school_it_was_opened_at(ctx, world):
    """A school alert (5 flags) counts the flags opened at the school, also one whose student has left
    for another school since; the school the student went to does not count it."""
    first = world.students[0]
    for i, sid in enumerate([first, *world.students2[:3]]):
        flag_phq9(ctx, sid, world.school.id, MOD_SEVERE, f"s1-{i}")
    _move(ctx, first, world.klass_other)  # 第二中学, same county
    for i, sid in enumerate(world.students_other[:4]):
        flag_phq9(ctx, sid, world.school2.id, MOD_SEVERE, f"s2-{i}")
    assert world.school2.id not in _alerts(ctx, "school"), "four flags opened at 第二中学 made a school alert"
    flag_phq9(ctx, world.students2[3], world.school.id, MOD_SEVERE, "s1-4")
    alert = _alerts(ctx, "school").get(world.school.id)
    assert alert is not None and alert.flag_count == 5
    # the old counsellor no longer reaches the moved flag: their page and list count the four they see
    # (a count of 5 beside 4 flags would tell them that the student who left still has an orange flag)
    page = escalation.get_cluster(ctx, world.actors["counsellor"], alert.id)
    assert page["count"] == len(page["flags"]) == 4
    assert [c["count"] for c in escalation.list_clusters(ctx, world.actors["counsellor"])
            if c["id"] == str(alert.id)] == [4]
    # and the new school's people see no cluster of the old school
    assert all(c["id"] != str(alert.id) for c in escalation.list_clusters(ctx, world.actors["counsellor2"]))


def _cluster_notices(ctx, actor):
    return [r for r in _told(ctx, actor) if r.template == "cluster_alert"]


def test_a_yellow_flag_that_moved_counts_where_it_becomes_orange_not_where_it_was_opened(ctx, world):
    """docs/flags.md §6: a flag counts towards the cluster of the class and school where it was when it
    became red/orange. A yellow flag counted nowhere when its student left for another school: it is
    re-pointed to the new class, and its rise there counts there — it completes no cluster at the old
    class and tells the old school nothing (which would tell it that a student who left now has an
    orange flag). (Until this rule, commit 912e44d, the rise completed the old class's cluster.)"""
    a = world.actors
    moved = world.students[0]
    fid = flag_phq9(ctx, moved, world.school.id, MODERATE, "a").flag_id  # yellow: counts nowhere yet
    _move(ctx, moved, world.klass_other)
    f = _flag(ctx, fid)
    assert (f.opened_class_unit_id, f.opened_school_unit_id) == (world.klass_other.id, world.school2.id)
    flag_phq9(ctx, world.students[1], world.school.id, MOD_SEVERE, "b")
    flag_phq9(ctx, world.students[2], world.school.id, MOD_SEVERE, "c")
    ctx.clock.advance(days=1)
    flag_phq9(ctx, moved, world.school2.id, MOD_SEVERE, "d")  # at the new school: yellow -> orange
    assert _flag(ctx, fid).level == "orange"
    assert world.klass.id not in _alerts(ctx, "class")
    assert not _cluster_notices(ctx, a["counsellor"]) and not _cluster_notices(ctx, a["leader"])
    # it counts at the new class: two more orange flags there make that class's cluster, told to that school
    flag_phq9(ctx, world.students_other[0], world.school2.id, MOD_SEVERE, "e")
    assert world.klass_other.id not in _alerts(ctx, "class")
    flag_phq9(ctx, world.students_other[1], world.school2.id, MOD_SEVERE, "f")
    alert = _alerts(ctx, "class").get(world.klass_other.id)
    assert alert is not None and alert.flag_count == 3
    assert _cluster_notices(ctx, a["counsellor2"])
    assert not _cluster_notices(ctx, a["counsellor"]) and not _cluster_notices(ctx, a["leader"])
    page = escalation.get_cluster(ctx, a["counsellor2"], alert.id)
    assert page["count"] == len(page["flags"]) == 3 and str(fid) in {x["id"] for x in page["flags"]}


def test_reviewer_repro_a_moved_flag_rising_at_the_new_school_shows_nothing_at_the_old(ctx, world):
    """The reviewer's reproduction (regression): yellow in 七年级1班, the student moves to 第二中学, two
    orange flags in 七年级1班, a day later the moved flag rises to orange at 第二中学. It used to raise
    七年级1班's alert, whose page showed the old counsellor count 3 beside 2 flags — telling the old
    school that the student who left now has an orange flag. Now there is no such alert, and every
    cluster the old school's people see counts only the flags they are shown."""
    a = world.actors
    flag_phq9(ctx, world.students[0], world.school.id, MODERATE, "r-0")
    _move(ctx, world.students[0], world.klass_other)
    flag_phq9(ctx, world.students[1], world.school.id, MOD_SEVERE, "r-1")
    flag_phq9(ctx, world.students[2], world.school.id, MOD_SEVERE, "r-2")
    ctx.clock.advance(days=1)
    flag_phq9(ctx, world.students[0], world.school2.id, MOD_SEVERE, "r-3")
    assert world.klass.id not in _alerts(ctx, "class") and world.school.id not in _alerts(ctx, "school")
    for key in ("counsellor", "leader"):
        assert not _cluster_notices(ctx, a[key]), key
        for c in escalation.list_clusters(ctx, a[key]):
            assert c["count"] == len(escalation.get_cluster(ctx, a[key], c["id"])["flags"]), (key, c)


def test_an_orange_flag_that_moved_counts_where_it_was_and_its_rise_there_tells_the_old_school_nothing(ctx, world):
    """An orange flag keeps counting in the class it became orange in after its student left (and not in
    the new class). The old counsellor's cluster page counts only the flags it lists: the moved one,
    now out of their reach, is in neither. Its later rise at the new school (orange -> red) checks
    nothing at the old class — not even when the old class's previous alert has just left the window,
    where a check there would raise a new alert and tell the old school about it."""
    a = world.actors
    st = world.students
    for i in range(3):  # day 0: a first cluster in 七年级1班
        flag_phq9(ctx, st[i], world.school.id, MOD_SEVERE, f"o-{i}")
    first = _alerts(ctx, "class")[world.klass.id]
    ctx.clock.advance(days=13)  # day 13: three more; the first alert (day 0) is still in the window
    moved = flag_phq9(ctx, st[3], world.school.id, MOD_SEVERE, "o-3").flag_id
    flag_phq9(ctx, st[4], world.school.id, MOD_SEVERE, "o-4")
    _move(ctx, st[3], world.klass_other)  # orange: keeps counting in 七年级1班
    f = _flag(ctx, moved)
    assert (f.opened_class_unit_id, f.opened_school_unit_id) == (world.klass.id, world.school.id)
    flag_phq9(ctx, st[5], world.school.id, MOD_SEVERE, "o-5")
    assert set(_alerts(ctx, "class")) == {world.klass.id} and _alerts(ctx, "class")[world.klass.id].id == first.id
    # its page, for the old counsellor: the three flags of day 0, count 3
    page = escalation.get_cluster(ctx, a["counsellor"], first.id)
    assert page["count"] == len(page["flags"]) == 3
    notices = len(_cluster_notices(ctx, a["counsellor"]))
    ctx.clock.advance(days=2)  # day 15: the first alert has left the window; day 13's three flags are in it
    flag_phq9(ctx, st[3], world.school2.id, SEVERE, "o-6")  # at 第二中学: orange -> red
    assert _flag(ctx, moved).level == "red"
    alerts = _alerts(ctx, "class")
    assert set(alerts) == {world.klass.id} and alerts[world.klass.id].id == first.id, "the rise checked the old class"
    assert len(_cluster_notices(ctx, a["counsellor"])) == notices
    assert not _cluster_notices(ctx, a["counsellor2"])


# ---------------------------------------------------------------- re-triage above the school tier


def test_retriage_of_a_flag_at_the_county_tells_the_schools_counsellor(ctx, world):
    """A flag escalated to the county (the school missed its deadline) and since assessed goes back to
    triage on a new concern. The county officer acknowledges at the county, but only the school's
    counsellor can interview the student again (core.flag_lifecycle: confirm / change_level / dismiss
    are the counsellor's at every tier): both are told, without names or clinical detail."""
    a = world.actors
    sid = world.students[5]
    fid = flag_phq9(ctx, sid, world.school.id, MOD_SEVERE, "普测").flag_id  # orange at the school
    ctx.clock.advance(hours=25)
    escalation.sweep(ctx, ctx.now())
    assert _flag(ctx, fid).tier == "county"
    flags.acknowledge(ctx, a["counsellor"], fid)
    flags.assess(ctx, a["counsellor"], fid, "confirm")
    flags.start_monitoring(ctx, a["counsellor"], fid)
    ctx.clock.advance(days=3)
    before = {r.id for r in _told(ctx, a["counsellor"], fid)}
    county_before = len(_told(ctx, a["county"], fid))
    concerns.submit_concern(ctx, a["head"], student_id=sid, category="self_harm", urgency="soon", note="")
    f = _flag(ctx, fid)
    assert (f.tier, f.status) == ("county", "raised")
    assert _events(ctx, fid)[-1][:2] == ("flag:retriaged", "evidence_retriage")
    assert len(_told(ctx, a["county"], fid)) == county_before + 1
    new = [r for r in _told(ctx, a["counsellor"], fid) if r.id not in before]
    assert len(new) == 1, "re-triaged at the county: the counsellor, who must interview again, was not told"
    assert new[0].template == "flag_needs_action"
    assert set(new[0].params) <= {"unit", "link", "unit_id", "role"}
    # and the counsellor can act on it at the county tier
    assert "acknowledge" in flags.get_flag(ctx, a["counsellor"], fid)["actions"]


def test_retriage_at_the_county_of_a_school_without_counsellor_tells_the_county_only(ctx, world):
    """The same re-triage where the school has no counsellor (the flag was handed up): the county is
    told, and the counsellor's notice that found nobody is recorded, as every such notice is."""
    from mh_platform.db.models import EventLog

    sid = world.students3[1]
    head3 = _user(ctx, "t.head3", Role.HEAD_TEACHER, world.klass3.id)
    fid = flag_phq9(ctx, sid, world.school3.id, MOD_SEVERE, "普测").flag_id
    flags.acknowledge(ctx, world.actors["county2"], fid)
    ctx.clock.advance(hours=2)
    n0 = len(_told(ctx, world.actors["county2"], fid))
    concerns.submit_concern(ctx, head3, student_id=sid, category="self_harm", urgency="soon", note="")
    assert len(_told(ctx, world.actors["county2"], fid)) == n0 + 1
    with ctx.uow() as uow:
        gaps = [e.data for e in uow.session.scalars(sa.select(EventLog).where(EventLog.kind == "notify:no_recipient"))
                if e.data.get("flag") == str(fid) and e.data.get("role") == "counsellor"]
    assert gaps


# ---------------------------------------------------------------- events of one transaction, in order


def test_events_written_in_one_transaction_keep_their_order(ctx, world):
    """A move to a school without counsellor writes two events at the same instant: the transfer, then
    the hand-up to the county. The history shows them in that order whatever order the database keeps
    the rows in: here they are stored the other way round (as rewriting the table can leave them —
    ``CLUSTER`` or pg_repack by the random primary key, free space reused by a later insert)."""
    a = world.actors
    sid = world.students[1]
    fid = flag_phq9(ctx, sid, world.school.id, MOD_SEVERE, "普测").flag_id
    ctx.clock.advance(hours=1)
    _move(ctx, sid, world.klass3)  # 大洼中学: no counsellor
    table = FlagEvent.__table__
    with ctx.uow() as uow:
        s = uow.session
        rows = [dict(r._mapping) for r in s.execute(sa.select(table).where(table.c.flag_id == fid,
                                                                           table.c.at == ctx.now()))]
        assert sorted(r["kind"] for r in rows) == ["flag:escalated", "flag:transferred"]
        s.execute(sa.delete(table).where(table.c.id.in_([r["id"] for r in rows])))
        rows.sort(key=lambda r: r["kind"])  # escalated first, transferred second
        for r in rows:
            s.execute(sa.insert(table).values(**r))
        uow.commit()
    kinds = [(e["kind"], e["reason_code"]) for e in flags.get_flag(ctx, a["county2"], fid)["events"]]
    assert kinds == [("flag:raised", "screening"), ("flag:transferred", "student_transferred"),
                     ("flag:escalated", "no_recipient")], kinds


def test_one_event_per_flag_version(ctx, world):
    """Each event carries the flag's version after its change (``seq``): the events of a flag are
    numbered in the order of its changes, one per number, whatever path wrote them (the sweep's batch,
    a person, evidence, a move)."""
    a = world.actors
    sid = world.students[2]
    fid = flag_phq9(ctx, sid, world.school.id, MOD_SEVERE, "普测").flag_id
    ctx.clock.advance(hours=25)
    escalation.sweep(ctx, ctx.now())                 # the batch path
    flags.acknowledge(ctx, a["counsellor"], fid)
    concerns.submit_concern(ctx, a["head"], student_id=sid, category="self_harm", urgency="immediate", note="")
    _move(ctx, sid, world.klass3)                   # transfer + hand-up in one transaction
    with ctx.uow() as uow:
        rows = [(e.seq, e.kind) for e in uow.session.scalars(sa.select(FlagEvent).where(FlagEvent.flag_id == fid)
                                                             .order_by(FlagEvent.seq))]
        version = uow.session.get(Flag, fid).version
    seqs = [n for n, _k in rows]
    assert seqs[0] == 1 and len(set(seqs)) == len(seqs) and seqs[-1] <= version, rows
    assert [k for _n, k in rows][-2:] == ["flag:transferred", "flag:escalated"]
    assert [e["kind"] for e in flags.get_flag(ctx, a["county2"], fid)["events"]] == [k for _n, k in rows]


# ---------------------------------------------------------------- a moved flag's clocks and escalation count


def test_flag_escalated_at_the_old_school_restarts_at_the_new_school(ctx, world):
    """Policy (DESIGN.md): a tier above the school is responsible because the *old* school missed a
    deadline. At the new school nobody has missed one: the flag restarts there — ``raised`` at the
    school tier, both clocks from the move, the new counsellor told — and the county takes it again
    only when the new school misses a deadline. The escalation count is history and runs on: the next
    step is the flag's second, with its own notice (a count restarted at 0 would re-use the first
    step's notice key, and the county officer would never be told)."""
    a = world.actors
    sid = world.students[3]
    fid = flag_phq9(ctx, sid, world.school.id, MOD_SEVERE, "普测").flag_id
    ctx.clock.advance(hours=25)
    escalation.sweep(ctx, ctx.now())
    f = _flag(ctx, fid)
    assert (f.tier, f.escalations) == ("county", 1)
    county_told = len(_told(ctx, a["county"], fid))
    ctx.clock.advance(hours=3)
    moved_at = ctx.now()
    _move(ctx, sid, world.klass_other)  # 第二中学, same county, has a counsellor
    f = _flag(ctx, fid)
    assert (f.tier, f.status, f.escalations) == ("school", "raised", 1)
    assert (f.tier_entered_at, f.ack_due_at, f.handle_due_at) == (
        moved_at, moved_at + timedelta(hours=24), moved_at + timedelta(hours=72))
    assert _told(ctx, a["counsellor2"], fid)
    ctx.clock.advance(hours=23)
    escalation.sweep(ctx, ctx.now())
    assert _flag(ctx, fid).tier == "school"  # the new school's own 24 h
    ctx.clock.advance(hours=2)
    escalation.sweep(ctx, ctx.now())
    f = _flag(ctx, fid)
    assert (f.tier, f.escalations) == ("county", 2)
    assert len(_told(ctx, a["county"], fid)) == county_told + 1


def test_flag_moved_within_the_school_keeps_its_tier_and_clocks(ctx, world):
    """Another class of the same school: the same counsellor and school leader hold the flag, so its
    tier, status and running deadlines go on (a move never buys a flag time)."""
    a = world.actors
    sid = world.students[4]
    fid = flag_phq9(ctx, sid, world.school.id, MOD_SEVERE, "普测").flag_id
    ctx.clock.advance(hours=25)
    escalation.sweep(ctx, ctx.now())
    before = _flag(ctx, fid)
    ctx.clock.advance(hours=1)
    _move(ctx, sid, world.klass2)
    after = _flag(ctx, fid)
    assert after.class_unit_id == world.klass2.id
    assert (after.tier, after.status, after.escalations, after.tier_entered_at, after.ack_due_at,
            after.handle_due_at) == (before.tier, before.status, before.escalations, before.tier_entered_at,
                                     before.ack_due_at, before.handle_due_at)
    assert "acknowledge" in flags.get_flag(ctx, a["counsellor"], fid)["actions"]




def test_sweep_on_watch_flag_in_unstaffed_school_is_idempotent(ctx, world):
    sid = world.students3[3]
    fid = flags.raise_watch(ctx, SYSTEM, sid, fr.WatchSignal(watch=True, probability=0.9, model_version="m1")).flag_id
    other = flag_phq9(ctx, world.students[0], world.school.id, MODERATE, "普测").flag_id  # staffed twin
    for _ in range(2):
        ctx.clock.advance(hours=73)
        for _ in range(2):
            escalation.sweep(ctx, ctx.now())
    for f_id in (fid, other):
        ev = _events(ctx, f_id)
        assert [e[0] for e in ev].count("flag:reminded") == 2, ev
    f = _flag(ctx, fid)
    assert (f.tier, f.escalations) == ("school", 2)


def test_flags_dismissed_as_false_positives_do_not_count_towards_a_cluster(ctx, world):
    """docs/flags.md §6: a class alert needs three red/orange flags; two dismissed at their interview
    do not count towards it."""
    a = world.actors
    sids = world.students[:4]
    for i, sid in enumerate(sids[:2]):
        fid = flag_phq9(ctx, sid, world.school.id, MOD_SEVERE, f"x{i}").flag_id
        flags.acknowledge(ctx, a["counsellor"], fid)
        flags.assess(ctx, a["counsellor"], fid, "dismiss", reason="误报")
    flag_phq9(ctx, sids[2], world.school.id, MOD_SEVERE, "x3")

    def alerts() -> int:
        with ctx.uow() as uow:
            return uow.session.scalar(sa.select(sa.func.count()).select_from(ClusterAlert)
                                      .where(ClusterAlert.scope == "class"))

    assert alerts() == 0
    flag_phq9(ctx, sids[3], world.school.id, SEVERE, "y")  # a second real one: two, still below three
    assert alerts() == 0


# ---------------------------------------------------------------- the no-recipient gap of a flag handed up, recorded once


def _gaps(ctx, fid, role):
    from mh_platform.db.models import EventLog

    with ctx.uow() as uow:
        return [e.data for e in uow.session.scalars(sa.select(EventLog).where(EventLog.kind == "notify:no_recipient"))
                if e.data.get("flag") == str(fid) and e.data.get("role") == role]


def test_retriage_handed_up_from_a_school_without_counsellor_records_the_gap_once(ctx, world):
    """Re-triage at the school tier where the counsellor has left since (deactivated): ``reach`` hands
    the flag up to the county and records the school's missing counsellor. The flag is now above the
    school, so the counsellor is also among those told of the re-triage — that notice must not record
    the same gap a second time."""
    a = world.actors
    sid = world.students[5]
    fid = flag_phq9(ctx, sid, world.school.id, MOD_SEVERE, "普测").flag_id
    flags.acknowledge(ctx, a["counsellor"], fid)
    auth.set_active(ctx, SYSTEM, a["counsellor"].user_id, False)
    ctx.clock.advance(hours=2)
    n0 = len(_told(ctx, a["county"], fid))
    concerns.submit_concern(ctx, a["head"], student_id=sid, category="self_harm", urgency="soon", note="")
    f = _flag(ctx, fid)
    assert (f.tier, f.status) == ("county", "raised")
    assert len(_told(ctx, a["county"], fid)) == n0 + 1
    assert len(_gaps(ctx, fid, "counsellor")) == 1, _gaps(ctx, fid, "counsellor")


def test_start_tier_move_handed_up_from_a_school_without_counsellor_records_the_gap_once(ctx, world):
    """A class-tier flag acknowledged by the head teacher moves up to the school on a screening (back to
    ``raised``) in a school without counsellor, and on to the county: one gap recorded for the counsellor."""
    sid = world.students3[0]
    fid, _head3 = _class_flag_in_school3(ctx, world, sid)
    ctx.clock.advance(hours=1)
    flag_phq9(ctx, sid, world.school3.id, MOD_SEVERE, "普测")
    assert (_flag(ctx, fid).tier, _flag(ctx, fid).status) == ("county", "raised")
    assert len(_gaps(ctx, fid, "counsellor")) == 1, _gaps(ctx, fid, "counsellor")
