"""End to end through the services: roster → consent → campaign on the job functions → 40 students
answer → scores stored → completion → refused consent cannot answer → the window closes."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import pytest
import sqlalchemy as sa
from screening_world import build_world, class_units, make_user, roster_rows, to_csv

from mh_platform.core.errors import NotFound
from mh_platform.core.instruments import load_instrument
from mh_platform.core.types import Role
from mh_platform.db.models import AccessCode, Campaign, EventLog, Outbox, Response
from mh_platform.jobs import campaign_jobs
from mh_platform.services import audit, campaigns, completion, consent, responses, roster
from mh_platform.services.responses import CodeRejected


def answers_for(inst, rng: random.Random, *, critical: bool = False) -> dict[str, object]:
    """Valid answers for every item; critical items answered negatively unless ``critical``."""
    crit = {c.item: c for c in inst.critical_items}
    out: dict[str, object] = {}
    for it in inst.items:
        values = [o.value for o in it.options]
        if it.number in crit:
            fire = [v for v in values if v in crit[it.number].levels]
            safe = [v for v in values if v not in crit[it.number].levels]
            out[str(it.number)] = (fire[-1] if critical else safe[0]) if (fire and safe) else values[0]
        else:
            out[str(it.number)] = rng.choice(values)
    return out


@pytest.fixture
def world(ctx):
    return build_world(ctx)


def test_full_campaign(ctx, world):
    rng = random.Random(7)
    # 1. roster: 2 classes x 25 students, imported by the school counsellor
    data = to_csv(roster_rows(classes=2, per_class=25))
    pv = roster.preview(ctx, world.counsellor, data, "roster.csv")
    assert pv.ok and pv.new == 50 and pv.changed == 0 and pv.duplicate == 0
    roster.commit(ctx, world.counsellor, data, "roster.csv")
    c1, c2 = class_units(ctx, world.school)
    ht1 = make_user(ctx, "t.ht1", Role.HEAD_TEACHER, c1.id)
    ht2 = make_user(ctx, "t.ht2", Role.HEAD_TEACHER, c2.id)

    # 2. consent: class 1 → 23 granted, 2 refused; class 2 → 22 granted, 1 refused, 2 not returned
    from mh_platform.db.models import Enrolment

    with ctx.uow() as uow:
        ids1 = list(uow.session.scalars(sa.select(Enrolment.student_id).where(Enrolment.class_unit_id == c1.id)
                                        .order_by(Enrolment.student_id)))
        ids2 = list(uow.session.scalars(sa.select(Enrolment.student_id).where(Enrolment.class_unit_id == c2.id)
                                        .order_by(Enrolment.student_id)))
    consent.record_many(ctx, ht1, [consent.ConsentIn(sid, "granted" if i < 23 else "refused") for i, sid in enumerate(ids1)])
    consent.record_many(ctx, ht2, [consent.ConsentIn(sid, "granted" if i < 22 else "refused") for i, sid in enumerate(ids2[:23])])
    refused = ids1[23:] + ids2[22:23]
    cov = {c.class_unit_id: c for c in consent.coverage(ctx, world.counsellor)}
    assert (cov[c1.id].granted, cov[c1.id].refused, cov[c1.id].missing) == (23, 2, 0)
    assert (cov[c2.id].granted, cov[c2.id].refused, cov[c2.id].missing) == (22, 1, 2)
    assert [c.class_unit_id for c in consent.coverage(ctx, ht1)] == [c1.id]  # a head teacher sees own class

    # 3. campaign by the counsellor; opened by the job when its window starts
    t0 = ctx.now()
    cid = campaigns.create(ctx, world.counsellor, name="2026秋季普测", unit_ids=[world.school.id], grades=[7],
                           opens_at=t0 + timedelta(hours=1), closes_at=t0 + timedelta(days=2))
    assert campaign_jobs.open_due_campaigns(ctx, ctx.now())["opened"] == []
    ctx.clock.advance(hours=1, minutes=5)
    assert campaign_jobs.open_due_campaigns(ctx, ctx.now())["opened"] == [str(cid)]
    assert campaign_jobs.open_due_campaigns(ctx, ctx.now())["opened"] == []  # idempotent

    # 4. code slips per class: no code for refused or missing consent
    sheet1 = campaigns.print_slips(ctx, ht1, cid, c1.id)
    sheet2 = campaigns.print_slips(ctx, ht2, cid, c2.id)
    issued = {sl.student_id: sl.code for sh in (sheet1, sheet2) for sl in sh.slips if sl.state == "issued"}
    assert len(issued) == 45 and not set(refused) & set(issued)
    assert sum(sl.state == "no_consent" for sl in sheet2.slips) == 3
    assert all(sl.name for sl in sheet1.slips)  # names for the head teacher's slips ...
    with ctx.uow() as uow:  # ... opened through disclosure, logged with the purpose
        from mh_platform.db.models import AccessLog
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(AccessLog)
                                  .where(AccessLog.purpose == "print_code_slips")) == 50

    # 5. 40 students answer: 10 through per-item autosave, 30 with whole-page posts (no JS)
    consented = [sid for sid in ids1[:23] + ids2[:22]]
    battery = ("phq9", "gad7", "asq", "k10", "who5")
    given: dict = {}
    for n, sid in enumerate(consented[:40]):
        sess = responses.begin(ctx, issued[sid].lower().replace("-", " "))  # forgiving input
        assert sess.battery == battery and sess.current == "phq9"
        for iid in battery:
            inst = load_instrument(iid)
            ans = answers_for(inst, rng, critical=(n == 0 and iid == "phq9"))
            given[(sid, iid)] = ans
            if n < 10:
                for k, v in ans.items():
                    res = responses.save_answer(ctx, sess.sitting, iid, k, v, item_ms=3000)
                if n == 0 and iid == "phq9":
                    assert res.critical  # help shown at once
                out = responses.submit(ctx, sess.sitting, iid)
            else:
                out = responses.submit(ctx, sess.sitting, iid, ans, {k: 2500 for k in ans})
            ctx.clock.advance(seconds=30)
        assert out.finished and out.next_instrument is None
        with pytest.raises(CodeRejected) as e:
            responses.begin(ctx, issued[sid])
        assert e.value.reason == "completed"

    # 6. a 41st student starts, closes the tab, and resumes with nothing lost
    sid41 = consented[40]
    sess = responses.begin(ctx, issued[sid41])
    for k in ("1", "2", "3"):
        responses.save_answer(ctx, sess.sitting, "phq9", k, 1)
    again = responses.begin(ctx, issued[sid41])
    assert again.access_code_id == sess.access_code_id and again.current == "phq9"
    assert responses.page(ctx, again.sitting, "phq9").answers == {1: 1, 2: 1, 3: 1}

    # 7. refused consent cannot answer, even with a forged code row; a withdrawal stops a code at once
    from mh_platform.services import codes
    forged = codes.generate()
    forged_token = bytes(16)  # the forger also wrote a sitting: the consent check still refuses
    with ctx.uow() as uow:
        uow.session.add(AccessCode(campaign_id=cid, student_id=refused[0], code_hash=codes.hash_code(ctx, uow.session, forged),
                                   class_unit_id=c1.id, created_at=ctx.now(),
                                   sitting_hash=responses.sitting_digest(forged_token)))
        uow.commit()
        forged_id = uow.session.scalar(sa.select(AccessCode.id).where(AccessCode.student_id == refused[0]))
    with pytest.raises(CodeRejected) as e:
        responses.begin(ctx, forged)
    assert e.value.reason == "no_consent"
    with pytest.raises(CodeRejected) as e:
        responses.save_answer(ctx, responses.Sitting(forged_id, forged_token), "phq9", 1, 0)
    assert e.value.reason == "no_consent"
    withdrawn = consented[44]
    w_sess = responses.begin(ctx, issued[withdrawn])
    consent.withdraw(ctx, ht2, withdrawn)
    with pytest.raises(CodeRejected):
        responses.save_answer(ctx, w_sess.sitting, "phq9", 1, 0)
    with pytest.raises(CodeRejected):
        responses.begin(ctx, issued[withdrawn])

    # 8. responses are scored and stored; answers encrypted as given
    with ctx.uow() as uow:
        s = uow.session
        rows = list(s.scalars(sa.select(Response).where(Response.campaign_id == cid, Response.status == "submitted")))
        assert len(rows) == 200
        assert not s.scalar(sa.select(sa.func.count()).select_from(Response).where(
            Response.student_id.in_(refused)))
        for r in rows:
            assert r.scored_at is not None and r.score_status in ("complete", "prorated")
            assert r.total is not None and r.band_id is not None
            txt = ctx.keyring.open_field(s, r.answers_enc, table="response", column="answers_enc", row_id=r.id)
            assert json.loads(txt) == given[(r.student_id, r.instrument_id)]
            # sealed: no run of the plaintext shows in the stored bytes (16 bytes of ciphertext
            # match a given 16-byte run by chance with probability ~2^-128; 3 bytes did now and then)
            assert txt.encode()[:16] not in r.answers_enc and txt.encode()[-16:] not in r.answers_enc
        crit = [r for r in rows if r.critical_fired]
        assert [(r.student_id, r.instrument_id) for r in crit if r.instrument_id == "phq9"] == [(consented[0], "phq9")]
        assert all(r.concern_level == "red" for r in crit if r.instrument_id == "phq9")

    # 9. completion: the school by class, the county with suppression, the head teacher's to-finish list
    rep = completion.completion(ctx, world.counsellor, cid)
    t = rep.unit
    assert (t.eligible, t.consented, t.started, t.completed) == (50, 44, 41, 40)
    by = {r.unit_id: r for r in rep.rows}
    assert (by[c1.id].eligible, by[c1.id].consented, by[c1.id].completed) == (25, 23, 23)
    assert (by[c2.id].eligible, by[c2.id].consented, by[c2.id].started, by[c2.id].completed) == (25, 21, 18, 17)
    county = completion.completion(ctx, world.county_officer, cid)
    assert county.unit.completed == 40 and [r.unit_id for r in county.rows] == [world.school.id]
    left = completion.to_finish(ctx, ht2, cid, c2.id)
    assert len(left) == 4 and sum(x.state == "in_progress" for x in left) == 1 and all(x.name for x in left)
    with pytest.raises(NotFound):
        completion.to_finish(ctx, ht1, cid, c2.id)  # another class: not found

    # 10. reminders: once a day per class, counts only
    assert campaign_jobs.send_reminders(ctx, ctx.now())["reminders"] == 1  # class 1 is done
    assert campaign_jobs.send_reminders(ctx, ctx.now())["reminders"] == 0
    with ctx.uow() as uow:
        ob = uow.session.scalar(sa.select(Outbox).where(Outbox.template == "screening_reminder"))
        assert ob.recipient_user_id == ht2.user_id and ob.params["remaining"] == 4

    # 11. the window closes on schedule; codes stop working
    assert campaign_jobs.close_due_campaigns(ctx, ctx.now())["closed"] == []
    ctx.clock.advance(days=2)
    assert campaign_jobs.close_due_campaigns(ctx, ctx.now())["closed"] == [str(cid)]
    assert campaign_jobs.close_due_campaigns(ctx, ctx.now())["closed"] == []
    with pytest.raises(CodeRejected) as e:
        responses.begin(ctx, issued[sid41])
    assert e.value.reason == "closed"
    with ctx.uow() as uow:
        assert uow.session.get(Campaign, cid).status == "closed"
        kinds = set(uow.session.scalars(sa.select(EventLog.kind)))
    assert {"campaign:opened", "campaign:closed", "consent:recorded", "consent:withdrawn", "roster:imported",
            "screening:response_submitted"} <= kinds
    assert audit.sequence(ctx).rejected == 0 and audit.verify(ctx).ok
