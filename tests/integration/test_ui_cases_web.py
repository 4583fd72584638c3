"""Case and referral pages found by the browser walkthrough: one id per element (labels point at their own
control), and dates the services refuse — a plan review in the past, attendance before the appointment."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from cases_world import PASSWORD, build, confirmed_flag, quick_argon2  # noqa: F401 - autouse fixture
from html_ids import assert_clean, duplicate_ids

from mh_platform.core.errors import ValidationFailed
from mh_platform.db.models import PlanItem, Referral, ReferralEvent
from mh_platform.services import cases, referrals
from mh_platform.web.app import create_app

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture
def world(ctx):
    return build(ctx)


@pytest.fixture
def app(ctx):
    return create_app(ctx=ctx, extra_config={"TESTING": True, "MHP_PROPAGATE_ERRORS": True})


def as_user(app, username):
    client = app.test_client()
    tok = CSRF_RE.search(client.get("/login").get_data(as_text=True)).group(1)
    r = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": tok})
    assert r.status_code in (302, 303)
    return client


def _case(ctx, w, student=0):
    c = w.actors["counsellor.a"]
    cid = cases.open_case(ctx, c, confirmed_flag(ctx, w.students[student], "red"), summary="访谈确认")
    return c, cid


def test_case_and_referral_pages_have_unique_ids(app, ctx, world):
    w = world
    c, cid = _case(ctx, w)
    confirmed_flag(ctx, w.students[1], "orange")  # two flags waiting for a case: two open-case forms
    confirmed_flag(ctx, w.students[2], "red")
    for days in (1, 2):  # two follow-ups waiting: two "record" forms
        cases.schedule_follow_up(ctx, c, cid, due_at=ctx.now() + timedelta(days=days))
    client = as_user(app, "counsellor.a")
    html = client.get(f"/cases/{cid}").get_data(as_text=True)
    # the fields the walkthrough found twice: each label now points at its own form's control
    for form, name in (("referral-form", "reason"), ("close-form", "reason"), ("contact-form", "note")):
        assert f'<label for="{form}-{name}">' in html and f'id="{form}-{name}"' in html, (form, name)
    assert 'id="f-reason"' not in html and 'id="f-note"' not in html
    assert_clean(html, "case detail")
    assert_clean(client.get("/cases").get_data(as_text=True), "cases")
    rid = referrals.create_referral(ctx, c, cid, institution_id=w.inst1, reason="需专业评估")
    referrals.transition(ctx, c, rid, "submit", consent="guardian")
    assert_clean(client.get(f"/cases/{cid}").get_data(as_text=True), "case detail with referral")
    assert_clean(client.get(f"/referrals/{rid}").get_data(as_text=True), "referral (counsellor)")
    clinician = as_user(app, "clinician.one")
    page = clinician.get(f"/referrals/{rid}").get_data(as_text=True)
    assert 'id="form-accept"' in page and 'id="form-decline"' in page
    assert_clean(page, "referral (clinician)")
    assert_clean(as_user(app, "city").get("/institutions").get_data(as_text=True), "institutions")


def test_the_checker_finds_duplicates():
    html = '<form><label for="f-reason">a</label><textarea id="f-reason"></textarea></form>' * 2
    assert duplicate_ids(html) == ["f-reason"]


def test_plan_review_in_the_past_is_refused_and_nothing_written(app, ctx, world):
    c, cid = _case(ctx, world)
    with ctx.uow() as uow:
        before = uow.session.scalar(sa.select(sa.func.count()).select_from(PlanItem))
    with pytest.raises(ValidationFailed) as exc:
        cases.add_plan_item(ctx, c, cid, goal="目标", action="措施", review_at=datetime(2020, 1, 1, tzinfo=UTC))
    assert exc.value.errors[0]["field"] == "review_at"
    item = cases.add_plan_item(ctx, c, cid, goal="目标", action="措施", review_at=ctx.now() + timedelta(days=7))
    with pytest.raises(ValidationFailed):
        cases.update_plan_item(ctx, c, item, review_at=ctx.now() - timedelta(days=1))
    # through the page: a clear message, no plan line
    client = as_user(app, "counsellor.a")
    tok = CSRF_RE.search(client.get(f"/cases/{cid}").get_data(as_text=True)).group(1)
    r = client.post(f"/cases/{cid}/plan", data={"csrf_token": tok, "kind": "support", "goal": "过去", "action": "x",
                                                "review_at": "2020-01-01T09:00"}, follow_redirects=True)
    assert r.status_code == 200 and "flash-error" in r.get_data(as_text=True)
    with ctx.uow() as uow:
        after = uow.session.scalar(sa.select(sa.func.count()).select_from(PlanItem))
    assert after == before + 1  # only the valid one


def test_attended_only_from_the_appointment_time(ctx, world, clock):
    w = world
    c, cid = _case(ctx, w)
    cl = w.actors["clinician.one"]
    rid = referrals.create_referral(ctx, c, cid, institution_id=w.inst1, reason="需专业评估")
    referrals.transition(ctx, c, rid, "submit", consent="guardian")
    referrals.transition(ctx, cl, rid, "accept")
    referrals.transition(ctx, cl, rid, "schedule", appointment_at=ctx.now() + timedelta(days=2))

    def events():
        with ctx.uow() as uow:
            return uow.session.scalar(sa.select(sa.func.count()).select_from(ReferralEvent)
                                      .where(ReferralEvent.referral_id == rid))

    n = events()
    with pytest.raises(ValidationFailed) as exc:
        referrals.transition(ctx, cl, rid, "record_attended")
    assert "appointment" in str(exc.value)
    with ctx.uow() as uow:
        assert uow.session.get(Referral, rid).state == "scheduled"
    assert events() == n
    clock.advance(days=2, minutes=1)
    assert referrals.transition(ctx, cl, rid, "record_attended")["state"] == "attended"
