"""The close grace: a student answering when the window closes loses nothing typed in the last minute.

At the close no new sitting can start (a typed code needs the window open). A sitting that was
already open keeps saving and submitting for ``sitting_grace_minutes`` (15 by default), whether or
not the close job has already run; then it is refused by time, and the close job ends it. With a
grace of 0 the close is hard, as before.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from screening_world import app, quick_argon2, ready  # noqa: F401 - fixtures

from mh_platform.config import ConfigError, load_settings
from mh_platform.db.models import AccessCode, Campaign, Response
from mh_platform.services import campaigns, responses

T = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(("status", "now", "grace_min", "admits"), [
    ("open", T - timedelta(seconds=1), 0, True),  # inside the window
    ("open", T, 0, False),  # the close is exclusive
    ("open", T, 15, True),  # close job not yet run: grace
    ("closed", T + timedelta(minutes=14, seconds=59), 15, True),  # close job ran: still grace
    ("closed", T + timedelta(minutes=15), 15, False),  # grace over
    ("closed", T - timedelta(seconds=1), 15, False),  # closed early is never "in the window"
    ("cancelled", T + timedelta(minutes=1), 15, False),  # a cancelled campaign has no grace
    ("scheduled", T - timedelta(hours=1), 15, False),
    ("open", T - timedelta(days=3, seconds=1), 15, False),  # before it opens
])
def test_window_rule(status, now, grace_min, admits):
    assert responses.window_admits(now, status, T - timedelta(days=3), T, timedelta(minutes=grace_min)) is admits


def test_the_grace_is_a_bounded_deployment_setting():
    assert load_settings({"env": "test"}, environ={}).sitting_grace_minutes == 15
    assert load_settings({"env": "test"}, environ={"MHP_SITTING_GRACE_MINUTES": "0"}).sitting_grace_minutes == 0
    for bad in ("-1", "121"):
        with pytest.raises(ConfigError, match="SITTING_GRACE"):
            load_settings({"env": "test"}, environ={"MHP_SITTING_GRACE_MINUTES": bad})


def _stored(ctx, sid) -> tuple[str, dict] | None:
    with ctx.uow() as uow:
        s = uow.session
        r = s.scalar(sa.select(Response).where(Response.student_id == sid, Response.instrument_id == "phq9"))
        if r is None:
            return None
        return r.status, json.loads(ctx.keyring.open_field(s, r.answers_enc, table="response",
                                                           column="answers_enc", row_id=r.id))


def _sitting_hash(ctx, sid):
    with ctx.uow() as uow:
        return uow.session.scalar(sa.select(AccessCode.sitting_hash).where(AccessCode.student_id == sid))


def _closes_at(ctx, cid) -> datetime:
    with ctx.uow() as uow:
        return uow.session.get(Campaign, cid).closes_at


def test_a_sitting_open_at_the_close_saves_and_submits_within_the_grace_then_ends(ctx, ready):
    world, cid, codes, refused, hts = ready
    (sid, code), (sid2, code2) = list(codes.items())[:2]
    sitting = responses.begin(ctx, code).sitting
    assert responses.save_answer(ctx, sitting, "phq9", 1, 2).n_answered == 1
    closes = _closes_at(ctx, cid)
    ctx.clock.set(closes + timedelta(seconds=30))
    # before the close job: the open sitting saves; a typed code (even this student's) starts nothing
    assert responses.save_answer(ctx, sitting, "phq9", 2, 1).n_answered == 2
    for c in (code, code2):
        with pytest.raises(responses.CodeRejected) as e:
            responses.begin(ctx, c)
        assert e.value.args[0] == "closed"
    # the close job closes the campaign on schedule but leaves the open sitting its grace
    out = campaigns.close_due(ctx)
    assert out["closed"] == [str(cid)] and out["sittings_ended"] == 0
    assert _sitting_hash(ctx, sid) is not None
    ctx.clock.advance(minutes=5)
    st = responses.page(ctx, sitting, "phq9")
    assert st.grace_until == closes + timedelta(minutes=15) and st.answers == {1: 2, 2: 1}
    res = responses.submit(ctx, sitting, "phq9", {str(n): 0 for n in range(3, 10)})
    assert res.next_instrument is not None and not res.finished
    assert _stored(ctx, sid) == ("submitted", {"1": 2, "2": 1, **{str(n): 0 for n in range(3, 10)}})
    # the grace ends: refused by time, whatever the job did; then the job ends the sitting
    ctx.clock.set(closes + timedelta(minutes=15))
    with pytest.raises(responses.CodeRejected) as e:
        responses.save_answer(ctx, sitting, res.next_instrument, 1, 1)
    assert e.value.args[0] == "closed"
    assert campaigns.close_due(ctx) == {"closed": [], "sittings_ended": 1}
    assert _sitting_hash(ctx, sid) is None
    with pytest.raises(responses.SittingEnded):
        responses.load(ctx, sitting)
    assert campaigns.close_due(ctx) == {"closed": [], "sittings_ended": 0}  # idempotent


def test_with_no_grace_the_close_is_hard(ctx, ready):
    world, cid, codes, refused, hts = ready
    ctx.settings = dataclasses.replace(ctx.settings, sitting_grace_minutes=0)
    sid, code = next(iter(codes.items()))
    sitting = responses.begin(ctx, code).sitting
    assert responses.save_answer(ctx, sitting, "phq9", 1, 2).n_answered == 1
    ctx.clock.set(_closes_at(ctx, cid))
    with pytest.raises(responses.CodeRejected):
        responses.save_answer(ctx, sitting, "phq9", 2, 1)
    assert campaigns.close_due(ctx) == {"closed": [str(cid)], "sittings_ended": 1}
    assert _sitting_hash(ctx, sid) is None
    assert _stored(ctx, sid) == ("in_progress", {"1": 2})  # what was acknowledged, nothing else


def test_the_student_page_says_the_window_has_closed_and_until_when_the_page_can_be_sent(ctx, ready, app):
    world, cid, codes, refused, hts = ready
    sid, code = next(iter(codes.items()))
    client = app.test_client()
    page = client.get("/s/")
    token = re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)
    r = client.post("/s/", data={"code": code, "csrf_token": token})
    first = client.get(r.headers["Location"])
    assert first.status_code == 200 and 'id="grace-notice"' not in first.text
    ctx.clock.set(_closes_at(ctx, cid) + timedelta(minutes=1))
    campaigns.close_due(ctx)
    during = client.get("/s/p/phq9")
    assert during.status_code == 200 and 'id="grace-notice"' in during.text
    token = re.search(r'name="csrf-token" content="([^"]+)"', during.text).group(1)
    saved = client.post("/s/answer", json={"instrument": "phq9", "item": 1, "value": 3}, headers={"X-CSRFToken": token})
    assert saved.status_code == 200 and saved.json["saved"] is True
    assert _stored(ctx, sid) == ("in_progress", {"1": 3})
    ctx.clock.advance(minutes=15)
    late = client.post("/s/answer", json={"instrument": "phq9", "item": 2, "value": 3}, headers={"X-CSRFToken": token})
    assert late.json["saved"] is False
    assert _stored(ctx, sid) == ("in_progress", {"1": 3})
