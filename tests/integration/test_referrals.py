"""Green-channel referrals through the services on the real database: every state end to end with a
decline and re-route, missed deadlines escalating county → city exactly once, institution isolation,
who sees the clinical feedback, consent override, the minimum-necessary view, the access log."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa
from cases_world import build, confirmed_flag, quick_argon2  # noqa: F401 - autouse fixture

from mh_platform.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from mh_platform.db.models import AccessLog, Case, EventLog, Flag, Outbox, PlanItem, Referral, ReferralEvent
from mh_platform.services import audit, cases, institutions, referrals

H = timedelta(hours=1)


@pytest.fixture
def world(ctx):
    return build(ctx)


def _case(ctx, w, level="red", i=0):
    flag = confirmed_flag(ctx, w.students[i], level)
    return cases.open_case(ctx, w.actors["counsellor.a"], flag, summary="个案摘要")


def _requested(ctx, w, level="red", inst=None):
    cid = _case(ctx, w, level)
    c = w.actors["counsellor.a"]
    rid = referrals.create_referral(ctx, c, cid, institution_id=inst or w.inst1, reason="持续自伤念头，需专业评估")
    referrals.transition(ctx, c, rid, "submit", consent="guardian")
    return cid, rid


class _Row:
    def __init__(self, o):
        self.recipient_user_id, self.params, self.channel = o.recipient_user_id, dict(o.params), o.channel


def _outbox(ctx, template):
    with ctx.uow() as uow:
        return [_Row(o) for o in uow.session.scalars(sa.select(Outbox).where(Outbox.template == template)
                                                     .order_by(Outbox.created_at))]


def test_end_to_end_through_every_state_with_decline_and_reroute(ctx, world, clock):
    w = world
    c, one, two = w.actors["counsellor.a"], w.actors["clinician.one"], w.actors["clinician.two"]
    cid = _case(ctx, w)
    rid = referrals.create_referral(ctx, c, cid, institution_id=w.inst1, reason="持续自伤念头，需专业评估")
    # a draft is invisible to the institution
    with pytest.raises(NotFound):
        referrals.referral_detail(ctx, one, rid)
    assert referrals.list_referrals(ctx, one) == []
    r = referrals.transition(ctx, c, rid, "submit", consent="guardian")
    assert r["state"] == "requested" and r["due_at"] == (clock.now() + 24 * H).isoformat()
    with ctx.uow() as uow:
        flag = uow.session.get(Flag, uow.session.get(Case, cid).flag_id)
        assert flag.status == "referral"  # intervention (case opened) → referral (submitted)
    assert {o.recipient_user_id for o in _outbox(ctx, "referral_received")} == {w.user_ids["clinician.one"]}
    # the clinician's inbox: only this institution's referrals
    assert [x["id"] for x in referrals.list_referrals(ctx, one)] == [str(rid)]
    assert referrals.list_referrals(ctx, two) == []
    with pytest.raises(NotFound):
        referrals.referral_detail(ctx, two, rid)
    with pytest.raises(NotFound):
        referrals.transition(ctx, two, rid, "accept")
    with pytest.raises(Forbidden):
        referrals.transition(ctx, c, rid, "accept")  # the school cannot accept for the institution
    clock.advance(hours=1)
    with pytest.raises(ValidationFailed):
        referrals.transition(ctx, one, rid, "decline", decline_code="busy")
    referrals.transition(ctx, one, rid, "decline", decline_code="no_capacity")
    assert _outbox(ctx, "referral_updated")[-1].recipient_user_id == w.user_ids["counsellor.a"]
    clock.advance(hours=1)
    with pytest.raises(ValidationFailed):
        referrals.transition(ctx, c, rid, "reroute", institution_id=w.inst1)  # must be another institution
    referrals.transition(ctx, c, rid, "reroute", institution_id=w.inst2)
    # re-routed: the first institution lost it, the second has it
    with pytest.raises(NotFound):
        referrals.referral_detail(ctx, one, rid)
    assert referrals.list_referrals(ctx, one) == []
    assert [x["id"] for x in referrals.list_referrals(ctx, two)] == [str(rid)]
    clock.advance(hours=1)
    assert referrals.referral_detail(ctx, two, rid)["actions"] == ["accept", "decline"]
    referrals.transition(ctx, two, rid, "accept")
    appt = clock.now() + 20 * H
    referrals.transition(ctx, two, rid, "schedule", appointment_at=appt)
    clock.advance(hours=21)
    referrals.transition(ctx, two, rid, "record_no_show")
    referrals.transition(ctx, two, rid, "reschedule", appointment_at=clock.now() + 10 * H)
    clock.advance(hours=11)
    referrals.transition(ctx, two, rid, "record_attended")
    with pytest.raises(ValidationFailed):
        referrals.transition(ctx, two, rid, "record_feedback", diagnosis_category="depressive_episode")
    referrals.transition(ctx, two, rid, "record_feedback", diagnosis_category="depressive_episode",
                         recommendations="门诊随访，每两周一次", return_advice="可复学，避免晚自习，每周心理辅导")
    with pytest.raises(Forbidden):
        referrals.transition(ctx, two, rid, "start_follow_up")
    review = clock.now() + timedelta(days=7)
    referrals.transition(ctx, c, rid, "start_follow_up",
                         reentry_items=[{"goal": "逐步恢复全天在校", "action": "第一周半天到校",
                                         "review_at": review.isoformat()}])
    with pytest.raises(ValidationFailed):
        referrals.transition(ctx, c, rid, "close")
    r = referrals.transition(ctx, c, rid, "close", reason="复学顺利，转入学校常规跟进")
    assert r["state"] == "closed" and r["due_at"] is None
    with pytest.raises(InvalidTransition):
        referrals.transition(ctx, c, rid, "cancel", reason="x")

    with ctx.uow() as uow:
        s = uow.session
        row = s.get(Referral, rid)
        assert row.institution_id == w.inst2 and row.attended_once and row.closed_at == clock.now()
        assert row.diagnosis_category is None and b"depressive" not in row.diagnosis_enc  # sealed, not a column
        assert "复学".encode() not in row.return_advice_enc
        states = [e.to_state for e in s.scalars(sa.select(ReferralEvent).where(ReferralEvent.referral_id == rid)
                                                .order_by(ReferralEvent.seq))]
        assert states == ["draft", "requested", "declined", "requested", "accepted", "scheduled", "no_show",
                          "scheduled", "attended", "feedback", "school_follow_up", "closed"]
        kinds = [e.kind for e in s.scalars(sa.select(EventLog).where(EventLog.object_id == str(rid))
                                           .order_by(EventLog.id))]
        assert kinds[0] == "referral:drafted" and kinds[-1] == "referral:close" and len(kinds) == 12
        for e in s.scalars(sa.select(EventLog).where(EventLog.object_type == "referral")):
            assert "depressive" not in repr(e.data) and "复学" not in repr(e.data)
        reentry = s.scalars(sa.select(PlanItem).where(PlanItem.case_id == cid, PlanItem.kind == "reentry")).all()
        assert len(reentry) == 1 and reentry[0].review_at == review
    d = cases.case_detail(ctx, c, cid)
    assert [p["goal"] for p in d["plan"] if p["kind"] == "reentry"] == ["逐步恢复全天在校"]
    assert d["referrals"][0]["feedback"]["return_advice"] == "可复学，避免晚自习，每周心理辅导"
    assert audit.sequence(ctx).rejected == 0 and audit.verify(ctx).ok


def test_missed_acceptance_deadline_escalates_to_county_then_city_exactly_once(ctx, world, clock):
    w = world
    _, rid = _requested(ctx, w, "red")
    clock.advance(hours=23)
    assert referrals.sweep(ctx, clock.now())["escalated"] == []
    clock.advance(hours=1, minutes=1)
    res = referrals.sweep(ctx, clock.now())
    assert res["escalated"] == [{"referral": str(rid), "missed": "requested", "from_tier": "school",
                                 "to_tier": "county"}]
    assert referrals.sweep(ctx, clock.now())["escalated"] == []  # exactly once per missed deadline
    with ctx.uow() as uow:
        row = uow.session.get(Referral, rid)
        assert row.tier == "county" and row.escalations == 1 and row.due_at == clock.now() + 24 * H
    notices = _outbox(ctx, "referral_overdue")
    assert {o.recipient_user_id for o in notices} == {w.user_ids["county.a"], w.user_ids["county.a.two"]}
    assert all(set(o.params) == {"unit", "link"} for o in notices)
    # the county sees it in its pipeline (no text); the other county does not
    pipe = referrals.list_referrals(ctx, w.actors["county.a"], overdue=False)
    assert [(x["id"], x["tier"]) for x in pipe] == [(str(rid), "county")]
    assert referrals.list_referrals(ctx, w.actors["county.b"]) == []
    d = referrals.referral_detail(ctx, w.actors["county.a"], rid)
    assert d["view"] == "summary" and d["reason"] is None and d["feedback"] is None
    clock.advance(hours=24, minutes=1)
    res = referrals.sweep(ctx, clock.now())
    assert [x["to_tier"] for x in res["escalated"]] == ["city"]
    assert {o.recipient_user_id for o in _outbox(ctx, "referral_overdue")} >= {w.user_ids["city"],
                                                                                w.user_ids["city.two"]}
    clock.advance(hours=24, minutes=1)
    res = referrals.sweep(ctx, clock.now())
    assert [(x["from_tier"], x["to_tier"]) for x in res["escalated"]] == [("city", "city")]  # a reminder
    with ctx.uow() as uow:
        s = uow.session
        assert s.get(Referral, rid).escalations == 3
        kinds = [e.kind for e in s.scalars(sa.select(EventLog).where(EventLog.object_id == str(rid))
                                           .order_by(EventLog.id))]
        assert kinds.count("referral:escalated") == 2 and kinds.count("referral:reminded") == 1
    # acting on it still works and the deadline moves on
    referrals.transition(ctx, w.actors["clinician.one"], rid, "accept")
    with ctx.uow() as uow:
        assert uow.session.get(Referral, rid).tier == "city"  # tiers never go down


def test_first_appointment_target_escalates_even_when_each_state_is_on_time(ctx, world, clock):
    w = world
    _, rid = _requested(ctx, w, "red")
    one = w.actors["clinician.one"]
    clock.advance(hours=20)
    referrals.transition(ctx, one, rid, "accept")
    clock.advance(hours=20)
    referrals.transition(ctx, one, rid, "schedule", appointment_at=clock.now() + 40 * H)  # after the 72 h target
    clock.advance(hours=32, minutes=1)
    res = referrals.sweep(ctx, clock.now())
    assert [(x["missed"], x["to_tier"]) for x in res["escalated"]] == [("first_appointment", "county")]


def test_a_stale_claim_loses(ctx, world, clock):
    """Two sweepers racing: the second one's conditional UPDATE on version finds nothing to claim."""
    w = world
    _, rid = _requested(ctx, w, "red")
    clock.advance(hours=25)
    with ctx.uow() as uow:
        stale = uow.session.get(Referral, rid)
        uow.session.expunge(stale)
    assert referrals._escalate_one(ctx, rid, clock.now()) is not None
    with ctx.uow() as uow:
        s = uow.session
        from mh_platform.core.errors import Conflict

        with pytest.raises(Conflict):
            referrals._write_back(s, s.merge(stale, load=False),
                                  referrals.to_core(stale))
    assert referrals._escalate_one(ctx, rid, clock.now()) is None


def test_feedback_visible_only_to_the_case_counsellor_and_the_institution(ctx, world, clock):
    w = world
    cid, rid = _requested(ctx, w, "red")
    one = w.actors["clinician.one"]
    referrals.transition(ctx, one, rid, "accept")
    referrals.transition(ctx, one, rid, "schedule", appointment_at=clock.now() + H)
    clock.advance(hours=2)
    referrals.transition(ctx, one, rid, "record_attended")
    referrals.transition(ctx, one, rid, "record_feedback", diagnosis_category="anxiety",
                         recommendations="药物与心理治疗结合", return_advice="两周后复学")
    fb = referrals.referral_detail(ctx, w.actors["counsellor.a"], rid)["feedback"]
    assert fb == {"diagnosis_category": "anxiety", "recommendations": "药物与心理治疗结合", "return_advice": "两周后复学"}
    assert referrals.referral_detail(ctx, one, rid)["feedback"]["return_advice"] == "两周后复学"
    other = referrals.referral_detail(ctx, w.actors["counsellor.a.two"], rid)  # same school, not the case's
    assert other["feedback"] is None and other["feedback_visible"] is False and other["reason"]
    assert referrals.referral_detail(ctx, w.actors["leader.a"], rid)["feedback"] is None
    assert cases.case_detail(ctx, w.actors["counsellor.a.two"], cid)["referrals"][0]["feedback"] is None
    from mh_platform.services import breakglass

    breakglass.open_break_glass(ctx, w.actors["county.a"], cid, reason="学生失联，需要核实安全计划")
    bg = referrals.referral_detail(ctx, w.actors["county.a"], rid)
    assert bg["view"] == "break_glass" and bg["reason"] and bg["feedback"] is None
    for who in ("clinician.two", "counsellor.b", "county.b", "teacher.a", "admin"):
        with pytest.raises(NotFound):
            referrals.referral_detail(ctx, w.actors[who], rid)
    with ctx.uow() as uow:
        rows = uow.session.scalars(sa.select(AccessLog).where(AccessLog.purpose == "clinical_feedback")).all()
        assert {r.user_id for r in rows} == {w.user_ids["counsellor.a"], w.user_ids["clinician.one"]}
        assert len(rows) == 6  # 3 fields × 2 people


def test_consent_override_only_for_red_with_an_audited_reason(ctx, world):
    w = world
    c = w.actors["counsellor.a"]
    cid = _case(ctx, w, "orange", i=1)
    rid = referrals.create_referral(ctx, c, cid, institution_id=w.inst1, reason="r")
    with pytest.raises(ValidationFailed):
        referrals.transition(ctx, c, rid, "submit")
    with pytest.raises(ValidationFailed, match="override"):
        referrals.transition(ctx, c, rid, "submit", consent="override", reason="家长联系不上")
    cid2 = _case(ctx, w, "red", i=2)
    rid2 = referrals.create_referral(ctx, c, cid2, institution_id=w.inst1, reason="r")
    with pytest.raises(ValidationFailed, match="reason"):
        referrals.transition(ctx, c, rid2, "submit", consent="override")
    referrals.transition(ctx, c, rid2, "submit", consent="override", reason="家长无法联系，学生有即时危险")
    with ctx.uow() as uow:
        s = uow.session
        row = s.get(Referral, rid2)
        assert row.consent_basis == "override" and "即时危险".encode() not in row.override_reason_enc
        ev = s.scalars(sa.select(EventLog).where(EventLog.kind == "referral:consent_overridden")).one()
        assert ev.data["consent_basis"] == "override" and "即时危险" not in repr(ev.data)
    assert referrals.referral_detail(ctx, c, rid2)["override_reason"] == "家长无法联系，学生有即时危险"


def test_institution_sees_a_minimum_necessary_view_and_inactive_institutions_get_nothing(ctx, world):
    w = world
    _, rid = _requested(ctx, w, "red")
    d = referrals.referral_detail(ctx, w.actors["clinician.one"], rid)
    assert set(d["student"]) == {"pseudonym", "age", "sex", "school_name"}
    assert d["student"]["school_name"] == "兴隆台实验中学" and d["student"]["age"] == 14
    assert d["reason"] == "持续自伤念头，需专业评估" and d["level"] == "red" and d["case_id"] is None
    assert "学生甲0" not in repr(d)
    with ctx.uow() as uow:
        rows = uow.session.scalars(sa.select(AccessLog).where(AccessLog.user_id == w.user_ids["clinician.one"])).all()
        assert [(r.field, r.purpose) for r in rows] == [("reason_enc", "referral_clinical")]
    # the city deactivates institution 2: no new referral or re-route may go there
    institutions.deactivate(ctx, w.actors["city"], w.inst2)
    with pytest.raises(Forbidden):
        institutions.deactivate(ctx, w.actors["county.a"], w.inst1)
    cid = _case(ctx, w, "red", i=1)
    with pytest.raises(ValidationFailed, match="no longer"):
        referrals.create_referral(ctx, w.actors["counsellor.a"], cid, institution_id=w.inst2, reason="r")
    names = [i["code"] for i in institutions.list_institutions(ctx, w.actors["counsellor.a"])]
    assert names == ["cw-pjmh"]
    assert [i["code"] for i in institutions.list_institutions(ctx, w.actors["clinician.two"],
                                                              include_inactive=True)] == ["cw-lhyt"]


def test_referral_event_notes_are_sealed_and_logged_when_read(ctx, world):
    w = world
    c = w.actors["counsellor.a"]
    _, rid = _requested(ctx, w, "red")
    referrals.transition(ctx, w.actors["clinician.one"], rid, "decline", decline_code="other",
                         reason="本院儿少科暂停接诊")
    with ctx.uow() as uow:
        ev = uow.session.scalars(sa.select(ReferralEvent).where(ReferralEvent.to_state == "declined")).one()
        assert ev.note_enc is not None and "暂停接诊".encode() not in ev.note_enc
    d = referrals.referral_detail(ctx, c, rid)
    assert [e["note"] for e in d["events"] if e["to_state"] == "declined"] == ["本院儿少科暂停接诊"]
    with ctx.uow() as uow:
        n = uow.session.scalar(sa.select(sa.func.count()).select_from(AccessLog)
                               .where(AccessLog.user_id == c.user_id, AccessLog.purpose == "referral_work"))
        assert n == 2  # the reason and the decline note (the override reason is empty)


def test_withdraw_from_a_silent_institution_needs_a_reason_and_tells_it(ctx, world, clock):
    w = world
    c = w.actors["counsellor.a"]
    _, rid = _requested(ctx, w, "red")
    clock.advance(hours=20)
    with pytest.raises(ValidationFailed, match="reason"):
        referrals.transition(ctx, c, rid, "reroute", institution_id=w.inst2)
    referrals.transition(ctx, c, rid, "reroute", institution_id=w.inst2, reason="机构20小时未回应")
    told = [o.recipient_user_id for o in _outbox(ctx, "referral_updated")]
    assert w.user_ids["clinician.one"] in told
    assert [o.recipient_user_id for o in _outbox(ctx, "referral_received")][-1] == w.user_ids["clinician.two"]
    with ctx.uow() as uow:
        row = uow.session.get(Referral, rid)
        assert row.requested_at == clock.now() - timedelta(hours=20)  # the first request still counts
        assert row.due_at == clock.now() + 24 * H  # the new institution's 24 h (earlier than the 72 h target)
