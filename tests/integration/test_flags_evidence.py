"""New evidence on an open flag: it moves the flag up to the tier its source starts at, and serious
evidence on a flag past triage sends it back to triage (docs/flags.md §3, "Evidence on an open flag").

DESIGN.md: a class monitor's concern starts at the class tier; every screening flag, a head teacher's
concern and the model's watch signal start at the school tier (the counsellor, the only one who sees
answers). instruments.md §4.1 (GLAD-PC): every positive PHQ-9 item 9 must be followed by a clinical
interview; critical items are evaluated on their own.

The first three tests are a clinical reviewer's reproductions, kept as written.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flags_world import flag_phq9, quick_hashes, stored_phq9, world  # noqa: F401 - fixtures

from mh_platform.core.errors import InvalidTransition
from mh_platform.db.models import Flag, FlagEvent, Outbox, Response
from mh_platform.services import concerns, escalation, flags


def _flag(ctx, fid) -> Flag:
    with ctx.uow() as uow:
        f = uow.session.get(Flag, uuid.UUID(str(fid)))
        uow.session.expunge(f)
        return f


def _outbox(ctx, **where) -> list[Outbox]:
    with ctx.uow() as uow:
        q = sa.select(Outbox)
        for k, v in where.items():
            q = q.where(getattr(Outbox, k) == v)
        rows = list(uow.session.scalars(q).all())
        uow.session.expunge_all()
        return rows


def _events(ctx, fid) -> list[FlagEvent]:
    with ctx.uow() as uow:
        rows = list(uow.session.scalars(sa.select(FlagEvent).where(FlagEvent.flag_id == uuid.UUID(str(fid)))
                                        .order_by(FlagEvent.at, FlagEvent.id)))
        uow.session.expunge_all()
        return rows






ZERO = {str(i): 0 for i in range(1, 10)}


def _monitored_red(ctx, world, sid):
    """A head teacher's 'immediate / self_harm' concern, interviewed and confirmed, now in monitoring."""
    a = world.actors
    fid = concerns.submit_concern(ctx, a["head"], student_id=sid, category="self_harm", urgency="immediate",
                                  note="")["flag_id"]
    flags.acknowledge(ctx, a["counsellor"], fid)
    flags.assess(ctx, a["counsellor"], fid, "confirm")
    flags.start_monitoring(ctx, a["counsellor"], fid)
    return fid


# --------------------------------------------------------------------------- the reviewer's reproductions


def test_new_self_harm_concern_on_monitored_red_flag_reaches_the_counsellor(ctx, world):
    """DESIGN: a concern logged by a teacher is a flag source; instruments.md §4.1: every positive
    self-harm answer must be followed up. A red flag in `monitoring` (handled weeks ago) gets a NEW
    'immediate / self_harm' concern: someone must be told and a deadline must run."""
    a = world.actors
    sid = world.students[1]
    fid = concerns.submit_concern(ctx, a["head"], student_id=sid, category="self_harm", urgency="immediate",
                                  note="")["flag_id"]
    flags.acknowledge(ctx, a["counsellor"], fid)
    flags.assess(ctx, a["counsellor"], fid, "confirm")
    flags.start_monitoring(ctx, a["counsellor"], fid)
    ctx.clock.advance(days=20)
    before = len(_outbox(ctx, recipient_user_id=a["counsellor"].user_id))
    again = concerns.submit_concern(ctx, a["head"], student_id=sid, category="self_harm", urgency="immediate",
                                    note="又说想死")
    assert again["flag_id"] == fid
    f = _flag(ctx, fid)
    after = len(_outbox(ctx, recipient_user_id=a["counsellor"].user_id))
    assert after > before or f.status == "raised" or f.ack_due_at is not None, (f.status, f.ack_due_at, before, after)


def test_new_phq9_item9_on_monitored_red_flag_reaches_the_counsellor(ctx, world):
    """Same, with a screening: PHQ-9 item 9 = 3 at the next campaign for a red flag in monitoring."""
    a = world.actors
    sid = world.students[2]
    first = flag_phq9(ctx, sid, world.school.id, {**ZERO, "9": 1}, "秋季")
    fid = first.flag_id
    flags.acknowledge(ctx, a["counsellor"], fid)
    flags.assess(ctx, a["counsellor"], fid, "confirm")
    flags.start_monitoring(ctx, a["counsellor"], fid)
    ctx.clock.advance(days=60)
    out = flag_phq9(ctx, sid, world.school.id, {**ZERO, "9": 3}, "春季")
    f = _flag(ctx, fid)
    assert str(out.flag_id) == str(fid)
    assert out.outbox_ids or f.ack_due_at is not None, (f.status, out)


def test_phq9_item9_on_a_class_tier_flag_reaches_the_counsellor(ctx, world):
    """DESIGN: 'every flag from a screening starts at the school tier (the counsellor)'; only the
    counsellor sees answers and can assess. A classmate's routine concern opened a yellow class-tier
    flag that the head teacher acknowledged; the student then answers PHQ-9 item 9 = 3."""
    a = world.actors
    sid = world.students[4]
    fid = concerns.submit_concern(ctx, a["monitor"], student_id=sid, category="mood", urgency="routine",
                                  note="")["flag_id"]
    flags.acknowledge(ctx, a["head"], fid)
    ctx.clock.advance(hours=2)
    before = len(_outbox(ctx, recipient_user_id=a["counsellor"].user_id))
    out = flag_phq9(ctx, sid, world.school.id, {**ZERO, "9": 3}, "普测")
    f = _flag(ctx, fid)
    after = len(_outbox(ctx, recipient_user_id=a["counsellor"].user_id))
    assert str(out.flag_id) == str(fid) and f.level == "red"
    assert f.tier != "class" or after > before, (f.tier, f.status, f.ack_due_at, f.handle_due_at, before, after)


# --------------------------------------------------------------------------- defect A: the evidence's start tier


def test_screening_evidence_moves_a_class_tier_flag_to_the_school_with_fresh_clocks_and_notices(ctx, world):
    a = world.actors
    sid = world.students[4]
    fid = concerns.submit_concern(ctx, a["monitor"], student_id=sid, category="mood", urgency="routine",
                                  note="")["flag_id"]
    flags.acknowledge(ctx, a["head"], fid)
    ctx.clock.advance(hours=2)
    at = ctx.now()
    flag_phq9(ctx, sid, world.school.id, {**ZERO, "9": 3}, "普测")
    f = _flag(ctx, fid)
    assert (f.level, f.tier, f.status) == ("red", "school", "raised")
    assert (f.tier_entered_at, f.ack_due_at, f.handle_due_at) == (at, at + timedelta(hours=1), at + timedelta(hours=24))
    assert f.escalations == 0  # no deadline was missed
    last = _events(ctx, fid)[-1]
    assert (last.kind, last.reason_code, last.from_tier, last.to_tier, last.from_status, last.to_status,
            last.from_level, last.to_level) == ("flag:escalated", "evidence_start_tier", "class", "school",
                                                "acknowledged", "raised", "yellow", "red")
    told = {r.template for r in _outbox(ctx, recipient_user_id=a["counsellor"].user_id)}
    assert "flag_needs_action" in told
    assert _outbox(ctx, recipient_user_id=a["county"].user_id, template="flag_oversight")  # red: county at once
    # the counsellor holds it now: only they may acknowledge; the head teacher no longer can
    assert "acknowledge" in flags.get_flag(ctx, a["counsellor"], fid)["actions"]
    assert "acknowledge" not in flags.get_flag(ctx, a["head"], fid)["actions"]
    # and the sweep escalates it on the school's red clock if nobody acts
    ctx.clock.advance(hours=1, minutes=1)
    res = escalation.sweep(ctx, ctx.now())
    assert [e["to_tier"] for e in res["escalated"]] == ["county"]


def test_a_head_teachers_concern_moves_a_monitors_flag_to_the_school_and_a_monitors_never_moves_it(ctx, world):
    a = world.actors
    sid = world.students[3]
    fid = concerns.submit_concern(ctx, a["monitor"], student_id=sid, category="mood", urgency="routine",
                                  note="")["flag_id"]
    flags.acknowledge(ctx, a["head"], fid)
    ctx.clock.advance(hours=1)
    # a second monitor concern starts at the class tier: the flag stays with the head teacher, who is
    # asked to acknowledge again (a concern at the flag's level is new information)
    concerns.submit_concern(ctx, a["monitor"], student_id=sid, category="withdrawal", urgency="routine", note="")
    f = _flag(ctx, fid)
    assert (f.tier, f.status, _events(ctx, fid)[-1].kind) == ("class", "raised", "flag:retriaged")
    flags.acknowledge(ctx, a["head"], fid)
    # the head teacher's own concern starts at the school: the counsellor must acknowledge it
    concerns.submit_concern(ctx, a["head"], student_id=sid, category="mood", urgency="routine", note="")
    f = _flag(ctx, fid)
    assert (f.tier, f.status, f.level) == ("school", "raised", "yellow")
    assert f.ack_due_at == ctx.now() + timedelta(hours=72)


def test_evidence_never_moves_a_flag_down(ctx, world):
    a = world.actors
    sid = world.students[5]
    fid = concerns.submit_concern(ctx, a["head"], student_id=sid, category="mood", urgency="soon",
                                  note="")["flag_id"]
    flags.escalate(ctx, a["counsellor"], fid, "家长拒绝沟通")
    assert _flag(ctx, fid).tier == "county"
    concerns.submit_concern(ctx, a["monitor"], student_id=sid, category="mood", urgency="soon", note="")
    flag_phq9(ctx, sid, world.school.id, {**ZERO, "1": 3, "2": 3, "3": 3, "4": 3, "5": 3}, "普测")  # orange band
    assert _flag(ctx, fid).tier == "county"


# --------------------------------------------------------------------------- defect B: re-triage at the same level


def test_a_new_self_harm_concern_sends_a_monitored_red_flag_back_to_triage(ctx, world):
    a = world.actors
    sid = world.students[1]
    fid = _monitored_red(ctx, world, sid)
    ctx.clock.advance(days=20)
    at = ctx.now()
    before = {r.dedupe_key for r in _outbox(ctx, recipient_user_id=a["counsellor"].user_id)}
    concerns.submit_concern(ctx, a["head"], student_id=sid, category="self_harm", urgency="immediate", note="又说想死")
    f = _flag(ctx, fid)
    assert (f.status, f.level, f.tier) == ("raised", "red", "school")
    assert (f.ack_due_at, f.handle_due_at) == (at + timedelta(hours=1), at + timedelta(hours=24))
    last = _events(ctx, fid)[-1]
    assert (last.kind, last.reason_code, last.from_status, last.to_status) == (
        "flag:retriaged", "evidence_retriage", "monitoring", "raised")
    new = [r for r in _outbox(ctx, recipient_user_id=a["counsellor"].user_id) if r.dedupe_key not in before]
    assert [r.template for r in new if r.channel == "inbox"] == ["flag_needs_action"]
    # nobody acknowledges: the sweep moves it to the county after the hour
    ctx.clock.advance(hours=1, minutes=1)
    assert [e["to_tier"] for e in escalation.sweep(ctx, ctx.now())["escalated"]] == ["county"]


def test_a_new_phq9_item9_sends_a_monitored_red_flag_back_to_triage_once(ctx, world):
    a = world.actors
    sid = world.students[2]
    fid = flag_phq9(ctx, sid, world.school.id, {**ZERO, "9": 1}, "秋季").flag_id
    flags.acknowledge(ctx, a["counsellor"], fid)
    flags.assess(ctx, a["counsellor"], fid, "confirm")
    flags.start_monitoring(ctx, a["counsellor"], fid)
    ctx.clock.advance(days=60)
    with ctx.uow() as uow:
        s = uow.session
        resp, result = stored_phq9(ctx, s, sid, world.school.id, {**ZERO, "9": 3}, "春季")
        out = flags.raise_from_response(ctx, s, resp, result, now=ctx.now())
        uow.commit()
        rid = resp.id
    f = _flag(ctx, fid)
    assert out.outbox_ids and (f.status, f.ack_due_at) == ("raised", ctx.now() + timedelta(hours=1))
    # the counsellor acknowledges; the same response's evidence again (a re-run) changes nothing
    flags.acknowledge(ctx, a["counsellor"], fid)
    n = len(_events(ctx, fid))
    ctx.clock.advance(minutes=5)
    with ctx.uow() as uow:
        s = uow.session
        again = flags.raise_from_response(ctx, s, s.get(Response, rid), result, now=ctx.now())
        uow.commit()
    assert again.outbox_ids == [] and _flag(ctx, fid).status == "acknowledged" and len(_events(ctx, fid)) == n


def test_a_routine_rescreen_in_the_same_band_leaves_a_monitored_flag_in_monitoring(ctx, world):
    """The documented choice: a band repeated at the flag's level is attached, visible to the
    counsellor, and re-triages nothing (a worse band raises the level; deterioration re-triages)."""
    a = world.actors
    sid = world.students[0]
    moderate = {**ZERO, "1": 2, "2": 2, "3": 2, "4": 2, "5": 2}  # 10: yellow
    fid = flag_phq9(ctx, sid, world.school.id, moderate, "秋季").flag_id
    for step in (flags.acknowledge, lambda c, x, f: flags.assess(c, x, f, "confirm"), flags.start_monitoring):
        step(ctx, a["counsellor"], fid)
    ctx.clock.advance(days=60)
    n = len(_events(ctx, fid))
    out = flag_phq9(ctx, sid, world.school.id, moderate, "春季")
    assert out.outbox_ids == [] and _flag(ctx, fid).status == "monitoring" and len(_events(ctx, fid)) == n


def test_evidence_after_a_close_request_cancels_it_and_the_close_cannot_be_approved(ctx, world):
    a = world.actors
    sid = world.students[1]
    fid = _monitored_red(ctx, world, sid)
    ctx.clock.advance(days=30)
    flags.close(ctx, a["head"], fid, "状态稳定四周")
    assert _flag(ctx, fid).status == "close_requested"
    ctx.clock.advance(days=1)
    # a re-screen with a milder result still cancels the request: the counsellor must look again
    flag_phq9(ctx, sid, world.school.id, {**ZERO, "1": 2, "2": 2, "3": 2, "4": 2, "5": 2}, "春季")
    f = _flag(ctx, fid)
    assert (f.status, f.level) == ("raised", "red")
    with pytest.raises(InvalidTransition):
        flags.review_close(ctx, a["counsellor"], fid, approve=True)
    assert _flag(ctx, fid).status == "raised"
