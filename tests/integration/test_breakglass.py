"""Break-glass: an officer's time-limited access to one red case, notices, expiry, second-person review."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from cases_world import build, confirmed_flag, quick_argon2  # noqa: F401 - autouse fixture

from mh_platform.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from mh_platform.db.models import AccessLog, BreakGlass, EventLog, Outbox
from mh_platform.services import breakglass, cases

REASON = "学生今晨失联，需核实安全计划与监护人联系方式"


@pytest.fixture
def world(ctx):
    return build(ctx)


def _case(ctx, w, level="red", i=0):
    flag = confirmed_flag(ctx, w.students[i], level)
    cid = cases.open_case(ctx, w.actors["counsellor.a"], flag, summary="个案摘要：有具体自伤计划")
    cases.log_guardian_contact(ctx, w.actors["counsellor.a"], cid, method="phone", note="父亲电话联系")
    return cid


def test_officer_gets_time_limited_access_with_notices(ctx, world, clock):
    w = world
    cid = _case(ctx, w)
    county = w.actors["county.a"]
    with pytest.raises(NotFound):
        cases.case_detail(ctx, county, cid)
    with pytest.raises(ValidationFailed):
        breakglass.open_break_glass(ctx, county, cid, reason="看看")
    with pytest.raises(NotFound):
        breakglass.open_break_glass(ctx, w.actors["county.b"], cid, reason=REASON)  # another county's case
    with pytest.raises(Forbidden):
        breakglass.open_break_glass(ctx, w.actors["counsellor.b"], cid, reason=REASON)
    orange = _case(ctx, w, "orange", i=1)
    with pytest.raises(Forbidden, match="red"):
        breakglass.open_break_glass(ctx, county, orange, reason=REASON)
    assert {c["id"]: c["break_glass_active"] for c in cases.list_cases(ctx, county)} == {str(cid): False}
    g = breakglass.open_break_glass(ctx, county, cid, reason=REASON)
    assert {c["id"]: c["break_glass_active"] for c in cases.list_cases(ctx, county)} == {str(cid): True}
    assert g["expires_at"] == (clock.now() + __import__("datetime").timedelta(hours=4)).isoformat()
    with pytest.raises(InvalidTransition):
        breakglass.open_break_glass(ctx, county, cid, reason=REASON)
    d = cases.case_detail(ctx, county, cid)
    assert d["view"] == "break_glass" and d["summary"] == "个案摘要：有具体自伤计划"
    assert d["guardian_contacts"][0]["note"] == "父亲电话联系"
    with pytest.raises(Forbidden):
        cases.add_plan_item(ctx, county, cid, goal="g", action="a", review_at=clock.now())  # read only
    with ctx.uow() as uow:
        s = uow.session
        rows = s.scalars(sa.select(AccessLog).where(AccessLog.user_id == county.user_id)).all()
        assert rows and {r.purpose for r in rows} == {"break_glass"}
        notices = s.scalars(sa.select(Outbox).where(Outbox.template == "breakglass_opened",
                                                    Outbox.channel == "inbox")).all()
        assert {n.recipient_user_id for n in notices} == {w.user_ids["counsellor.a"], w.user_ids["city"],
                                                          w.user_ids["city.two"]}
        assert all(set(n.params) == {"unit", "link"} for n in notices)
        bg = s.scalars(sa.select(BreakGlass)).one()
        assert "失联".encode() not in bg.reason_enc
        ev = s.scalars(sa.select(EventLog).where(EventLog.kind == "breakglass:opened")).one()
        assert "失联" not in repr(ev.data) and ev.data["hours"] == 4
    # the other county's officer and the city without a grant still get 404
    for who in ("county.b", "city", "county.a.two"):
        with pytest.raises(NotFound):
            cases.case_detail(ctx, w.actors[who], cid)
    clock.advance(hours=3, minutes=59)
    assert cases.case_detail(ctx, county, cid)["view"] == "break_glass"
    clock.advance(minutes=1)
    with pytest.raises(NotFound):
        cases.case_detail(ctx, county, cid)  # expired
    assert breakglass.my_grants(ctx, county) == []


def test_second_person_review_closes_each_use(ctx, world):
    w = world
    cid = _case(ctx, w)
    g = breakglass.open_break_glass(ctx, w.actors["county.a"], cid, reason=REASON)
    q = breakglass.review_queue(ctx, w.actors["county.a.two"])
    assert [(x["id"], x["reason"], x["user"], x["own"]) for x in q] == [(g["id"], REASON, "county.a", False)]
    assert breakglass.review_queue(ctx, w.actors["county.b"]) == []
    assert [x["id"] for x in breakglass.review_queue(ctx, w.actors["city"])] == [g["id"]]
    with pytest.raises(Forbidden, match="second person"):
        breakglass.review(ctx, w.actors["county.a"], g["id"], verdict="justified")
    with pytest.raises(NotFound):
        breakglass.review(ctx, w.actors["county.b"], g["id"], verdict="justified")
    with pytest.raises(ValidationFailed):
        breakglass.review(ctx, w.actors["city"], g["id"], verdict="fine")
    with pytest.raises(Forbidden):
        breakglass.review(ctx, w.actors["counsellor.a"], g["id"], verdict="justified")
    breakglass.review(ctx, w.actors["city"], g["id"], verdict="unjustified")
    with pytest.raises(InvalidTransition):
        breakglass.review(ctx, w.actors["county.a.two"], g["id"], verdict="justified")
    assert breakglass.review_queue(ctx, w.actors["county.a.two"]) == []
    done = breakglass.review_queue(ctx, w.actors["city"], include_closed=True)
    assert [(x["verdict"], x["reviewed_at"] is not None) for x in done] == [("unjustified", True)]
    with ctx.uow() as uow:
        s = uow.session
        ev = s.scalars(sa.select(EventLog).where(EventLog.kind == "breakglass:reviewed")).one()
        assert ev.data["verdict"] == "unjustified" and ev.actor_user_id == w.user_ids["city"]
        n = s.scalar(sa.select(sa.func.count()).select_from(AccessLog).where(AccessLog.purpose == "breakglass_review"))
        assert n == 3  # each time a reviewer's queue showed the reason: county.a.two, city, city (closed list)
