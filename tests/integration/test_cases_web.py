"""The cases/referrals JSON API and pages through the Flask app on the real database."""

from __future__ import annotations

import re

import pytest
from cases_world import PASSWORD, build, confirmed_flag, quick_argon2  # noqa: F401 - autouse fixture

from mh_platform.services import cases, referrals
from mh_platform.web.app import create_app

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


@pytest.fixture
def world(ctx):
    return build(ctx)


@pytest.fixture
def client(ctx):
    app = create_app(ctx=ctx, extra_config={"TESTING": True, "MHP_PROPAGATE_ERRORS": True})
    return app.test_client()


def token(client, username):
    r = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.get_json()
    return {"Authorization": f"Bearer {r.get_json()['token']}"}


def login(client, username):
    page = client.get("/login")
    tok = CSRF_RE.search(page.get_data(as_text=True)).group(1)
    r = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": tok})
    assert r.status_code in (302, 303)


def csrf(client, path):
    return CSRF_RE.search(client.get(path).get_data(as_text=True)).group(1)


def test_api_case_and_referral_flow_with_scope(ctx, world, client, clock):
    w = world
    flag = confirmed_flag(ctx, w.students[0], "red")
    c = token(client, "counsellor.a")
    r = client.post("/api/v1/cases", json={"flag_id": str(flag), "summary": "访谈确认"}, headers=c)
    assert r.status_code == 201
    cid = r.get_json()["id"]
    assert client.post("/api/v1/cases", json={"flag_id": str(flag)}, headers=c).status_code == 409
    assert client.post("/api/v1/cases", json={"flag_id": "nope"}, headers=c).status_code == 422
    assert [x["id"] for x in client.get("/api/v1/cases", headers=c).get_json()["items"]] == [cid]
    d = client.get(f"/api/v1/cases/{cid}", headers=c).get_json()
    assert d["summary"] == "访谈确认" and d["view"] == "full"
    other = token(client, "counsellor.b")
    assert client.get(f"/api/v1/cases/{cid}", headers=other).status_code == 404
    assert client.get("/api/v1/cases/not-a-uuid", headers=c).status_code == 404
    assert client.get("/api/v1/cases").status_code == 401

    r = client.post("/api/v1/referrals", json={"case_id": cid, "institution_id": str(w.inst1),
                                                "reason": "需要专业评估", "submit": True, "consent": "guardian"},
                    headers=c)
    assert r.status_code == 201 and r.get_json()["state"] == "requested"
    rid = r.get_json()["id"]
    one, two = token(client, "clinician.one"), token(client, "clinician.two")
    assert [x["id"] for x in client.get("/api/v1/referrals", headers=one).get_json()["items"]] == [rid]
    assert client.get("/api/v1/referrals", headers=two).get_json()["items"] == []
    assert client.get(f"/api/v1/referrals/{rid}", headers=two).status_code == 404
    assert client.post(f"/api/v1/referrals/{rid}/accept", json={}, headers=two).status_code == 404
    assert client.post(f"/api/v1/referrals/{rid}/accept", json={}, headers=c).status_code == 403
    assert client.post(f"/api/v1/referrals/{rid}/fly", json={}, headers=one).status_code == 404
    detail = client.get(f"/api/v1/referrals/{rid}", headers=one).get_json()
    assert detail["student"]["pseudonym"] and "student_name" not in detail and detail["case_id"] is None
    assert detail["actions"] == ["accept", "decline"]
    r = client.post(f"/api/v1/referrals/{rid}/accept", json={}, headers=one)
    assert r.status_code == 200 and r.get_json()["state"] == "accepted"
    assert client.post(f"/api/v1/referrals/{rid}/accept", json={}, headers=one).status_code == 409
    r = client.post(f"/api/v1/referrals/{rid}/schedule", json={"appointment_at": "2026-09-15T10:00:00"}, headers=one)
    assert r.status_code == 422  # a time without a zone is refused
    r = client.post(f"/api/v1/referrals/{rid}/schedule", json={"appointment_at": "2026-09-15T10:00:00+08:00"},
                    headers=one)
    assert r.status_code == 200 and r.get_json()["state"] == "scheduled"
    county = token(client, "county.a")
    pipe = client.get("/api/v1/referrals?overdue=false", headers=county).get_json()["items"]
    assert [x["id"] for x in pipe] == [rid] and pipe[0]["actions"] == []
    assert client.get(f"/api/v1/referrals/{rid}", headers=county).get_json()["reason"] is None

    spec = client.get("/api/v1/openapi.json").get_json()
    for path in ("/api/v1/cases", "/api/v1/cases/{case_id}", "/api/v1/referrals",
                 "/api/v1/referrals/{referral_id}/{action}"):
        assert path in spec["paths"]


def test_pages_counsellor_makes_a_referral_and_clinician_accepts(ctx, world, client, clock):
    w = world
    flag = confirmed_flag(ctx, w.students[0], "red")
    login(client, "counsellor.a")
    page = client.get("/cases").get_data(as_text=True)
    assert "建立个案" in page
    r = client.post("/cases/open", data={"flag_id": str(flag), "summary": "页面建档",
                                         "csrf_token": csrf(client, "/cases")})
    assert r.status_code == 302
    case_url = r.headers["Location"]
    page = client.get(case_url).get_data(as_text=True)
    assert "页面建档" in page and "学生甲0" in page and "盘锦市精神卫生中心" in page
    cid = case_url.rstrip("/").rsplit("/", 1)[1]
    r = client.post(f"/cases/{cid}/referrals", data={"institution_id": str(w.inst1), "reason": "页面转介原因",
                                                     "consent": "guardian", "submit_now": "1",
                                                     "csrf_token": csrf(client, case_url)})
    assert r.status_code == 302
    page = client.get(case_url).get_data(as_text=True)
    assert "已申请，待机构受理" in page
    # a refused action comes back as a message, not an error page
    r = client.post(f"/cases/{cid}/plan", data={"goal": "", "action": "", "review_at": "",
                                                "csrf_token": csrf(client, case_url)}, follow_redirects=True)
    flashes = re.findall(r'class="flash flash-error"[^>]*>([^<]*)<', r.get_data(as_text=True))
    assert r.status_code == 200 and flashes == ["未能完成：请填写时间。"]  # no "（review_at: required）"
    r = client.post(f"/cases/{cid}/contacts", data={"method": "phone", "note": "",
                                                    "csrf_token": csrf(client, case_url)}, follow_redirects=True)
    flashes = re.findall(r'class="flash flash-error"[^>]*>([^<]*)<', r.get_data(as_text=True))
    assert flashes == ["未能完成：请填写记录内容。"]  # not "note is required（note: required）"
    client.post("/logout", data={"csrf_token": csrf(client, "/")})

    login(client, "clinician.one")
    inbox = client.get("/referrals").get_data(as_text=True)
    assert "页面转介原因" not in inbox and "已申请，待机构受理" in inbox
    rid = referrals.list_referrals(ctx, w.actors["clinician.one"])[0]["id"]
    page = client.get(f"/referrals/{rid}").get_data(as_text=True)
    assert "页面转介原因" in page and "学生甲0" not in page
    r = client.post(f"/referrals/{rid}/accept", data={"csrf_token": csrf(client, f"/referrals/{rid}")})
    assert r.status_code == 302
    assert "机构已受理" in client.get(f"/referrals/{rid}").get_data(as_text=True)
    client.post("/lang", data={"lang": "en", "csrf_token": csrf(client, f"/referrals/{rid}")})
    english = client.get(f"/referrals/{rid}").get_data(as_text=True)
    assert "Accepted by the institution" in english and "Schedule an appointment" in english
    client.post("/lang", data={"lang": "zh_CN", "csrf_token": csrf(client, f"/referrals/{rid}")})
    assert client.get(f"/cases/{cid}").status_code == 404  # a clinician never sees the case
    client.post("/logout", data={"csrf_token": csrf(client, "/")})

    login(client, "clinician.two")
    assert client.get(f"/referrals/{rid}").status_code == 404
    assert "暂无转介" in client.get("/referrals").get_data(as_text=True)


def test_leader_home_panel_counts_open_red_cases_and_case_page_hides_text(ctx, world, client):
    w = world
    cid = cases.open_case(ctx, w.actors["counsellor.a"], confirmed_flag(ctx, w.students[0], "red"), summary="机密摘要")
    login(client, "leader.a")
    home = client.get("/").get_data(as_text=True)
    panel = home.split('id="panel-cases-leader"', 1)[1].split("</article>", 1)[0]
    assert re.search(r'class="count"><a href="[^"]+">1</a>', panel)
    page = client.get(f"/cases/{cid}").get_data(as_text=True)
    assert "校领导督导视图" in page and "机密摘要" not in page and "学生甲0" not in page


def test_break_glass_and_review_pages(ctx, world, client):
    w = world
    flag = confirmed_flag(ctx, w.students[0], "red")
    cid = cases.open_case(ctx, w.actors["counsellor.a"], flag, summary="摘要")
    login(client, "county.a")
    assert client.get(f"/cases/{cid}").status_code == 404
    assert "紧急查阅" in client.get("/cases").get_data(as_text=True)
    r = client.post(f"/break-glass/{cid}", data={"reason": "学生失联，需核实安全计划",
                                                "csrf_token": csrf(client, f"/break-glass/{cid}")})
    assert r.status_code == 302
    assert "限时紧急查阅" in client.get(f"/cases/{cid}").get_data(as_text=True)
    client.post("/logout", data={"csrf_token": csrf(client, "/")})
    login(client, "city")
    q = client.get("/break-glass/review").get_data(as_text=True)
    assert "学生失联，需核实安全计划" in q
    bg = re.search(r'action="/break-glass/review/([0-9a-f-]+)"', q).group(1)
    r = client.post(f"/break-glass/review/{bg}", data={"verdict": "justified",
                                                        "csrf_token": csrf(client, "/break-glass/review")},
                    follow_redirects=True)
    assert "暂无待复核" in r.get_data(as_text=True)
