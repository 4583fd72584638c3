"""Flag pages and the flags/concerns API through Flask: scope, roles, and a monitor never sees a flag."""

from __future__ import annotations

import re

import pytest
from flags_world import PASSWORD, quick_hashes, world  # noqa: F401 - fixtures

from mh_platform.web.app import create_app

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def client(ctx):
    app = create_app(ctx=ctx, extra_config={"TESTING": True, "MHP_PROPAGATE_ERRORS": True})
    return app.test_client()


def login(client, username):
    html = client.get("/login").get_data(as_text=True)
    token = CSRF_RE.search(html).group(1)
    r = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert r.status_code in (302, 303), r.get_data(as_text=True)[:500]


def token(client, username):
    r = client.post("/api/v1/auth/token", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.get_json()
    return {"Authorization": f"Bearer {r.get_json()['token']}"}


def csrf(client, path):
    return CSRF_RE.search(client.get(path).get_data(as_text=True)).group(1)


def test_api_concern_to_flag_and_scoped_reads(client, world):
    mon = token(client, "t.monitor")
    r = client.post("/api/v1/concerns", headers=mon, json={"student_id": str(world.students[1]), "category": "mood",
                                                           "urgency": "immediate", "note": "一直在哭"})
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert set(body) == {"concern_id", "flag_id", "status"}
    fid = body["flag_id"]
    # the monitor: no flag data through any call
    assert client.get("/api/v1/flags", headers=mon).status_code == 403
    for path in (f"/api/v1/flags/{fid}",):
        r = client.get(path, headers=mon)
        assert r.status_code == 404 and "level" not in r.get_data(as_text=True)
    for action in ("acknowledge", "escalate", "close"):
        assert client.post(f"/api/v1/flags/{fid}/{action}", headers=mon, json={"reason": "x"}).status_code == 404
    mine = client.get("/api/v1/concerns", headers=mon).get_json()["items"]
    assert len(mine) == 1 and mine[0]["status"] == "received"
    assert "flag_id" not in mine[0] and "level" not in mine[0] and "note" not in mine[0]
    # the head teacher: level, tier, what to do — no evidence, no scores
    head = token(client, "t.head")
    d = client.get(f"/api/v1/flags/{fid}", headers=head).get_json()
    assert (d["level"], d["tier"], d["status"]) == ("red", "class", "raised")
    assert "evidence" not in d and d["what_to_do"]["zh"]
    assert [f["id"] for f in client.get("/api/v1/flags?level=red", headers=head).get_json()["items"]] == [fid]
    assert client.get("/api/v1/flags?level=purple", headers=head).status_code == 422
    # head teacher escalates to the school (reason required)
    assert client.post(f"/api/v1/flags/{fid}/escalate", headers=head, json={}).status_code == 422
    r = client.post(f"/api/v1/flags/{fid}/escalate", headers=head, json={"reason": "请心理老师访谈"})
    assert r.status_code == 200 and r.get_json()["tier"] == "school"
    # the counsellor of another school: 404; this school's counsellor: evidence and actions
    assert client.get(f"/api/v1/flags/{fid}", headers=token(client, "t.counsellor2")).status_code == 404
    c = token(client, "t.counsellor")
    d = client.get(f"/api/v1/flags/{fid}", headers=c).get_json()
    assert d["evidence"][0]["source"] == "concern" and "acknowledge" in d["actions"]
    assert client.post(f"/api/v1/flags/{fid}/acknowledge", headers=c).get_json()["status"] == "acknowledged"
    r = client.post(f"/api/v1/flags/{fid}/assess", headers=c, json={"outcome": "dismiss"})
    assert r.status_code == 422  # a dismissal needs a reason
    r = client.post(f"/api/v1/flags/{fid}/assess", headers=c, json={"outcome": "confirm"})
    assert r.get_json()["status"] == "assessed"
    assert client.post(f"/api/v1/flags/{fid}/acknowledge", headers=c).status_code == 409
    events = client.get(f"/api/v1/flags/{fid}", headers=c).get_json()["events"]
    assert [e["kind"] for e in events] == ["flag:raised", "flag:escalated", "flag:acknowledged", "flag:confirmed"]
    # the county sees the red flag for oversight; the other county does not
    assert client.get(f"/api/v1/flags/{fid}", headers=token(client, "t.county")).status_code == 200
    assert client.get(f"/api/v1/flags/{fid}", headers=token(client, "t.county2")).status_code == 404
    assert client.get(f"/api/v1/flags/{fid}", headers=token(client, "t.admin")).status_code == 404
    listed = client.get("/api/v1/concerns", headers=c).get_json()["items"]
    assert listed[0]["flag_id"] == fid and listed[0]["status"] == "in_progress"


def test_monitor_pages_never_show_flag_data(client, world, ctx):
    from mh_platform.services import concerns

    fid = concerns.submit_concern(ctx, world.actors["head"], student_id=world.students[2], category="self_harm",
                                  urgency="immediate", note="")["flag_id"]
    login(client, "t.monitor")
    r = client.get("/flags")
    assert r.status_code == 302 and r.headers["Location"].endswith("/concerns")
    assert client.get(f"/flags/{fid}").status_code == 404
    page = client.get("/concerns").get_data(as_text=True)
    assert fid not in page and "红色" not in page and "level-red" not in page
    token_ = csrf(client, "/concerns")
    r = client.post("/concerns", data={"csrf_token": token_, "student_id": str(world.students[3]),
                                       "category": "withdrawal", "urgency": "soon", "note": "不说话"})
    assert r.status_code == 302
    page = client.get("/concerns").get_data(as_text=True)
    assert "已收到" in page and "不说话" not in page and "橙色" not in page
    home = client.get("/").get_data(as_text=True)
    assert fid not in home
    r = client.post(f"/flags/{fid}/act", data={"csrf_token": token_, "action": "acknowledge"})
    assert r.status_code == 404


def test_counsellor_queue_one_click_acknowledge_and_head_teacher_sees_no_scores(client, world, ctx):
    from mh_platform.services import concerns

    fid = concerns.submit_concern(ctx, world.actors["head"], student_id=world.students[2], category="mood",
                                  urgency="soon", note="")["flag_id"]
    login(client, "t.counsellor")
    page = client.get("/flags").get_data(as_text=True)
    assert f'id="ack-{fid}"' in page and "学生k1-2" in page  # the counsellor may name their school's students
    r = client.post(f"/flags/{fid}/act", data={"csrf_token": csrf(client, "/flags"), "action": "acknowledge",
                                                "back": "queue"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/flags")
    page = client.get(f"/flags/{fid}").get_data(as_text=True)
    assert 'data-status="acknowledged"' in page and 'id="evidence"' in page
    client.post("/logout", data={"csrf_token": csrf(client, "/flags")})
    login(client, "t.head")
    page = client.get(f"/flags/{fid}").get_data(as_text=True)
    assert 'id="evidence"' not in page and "总分" not in page and 'id="what-to-do"' in page
    # the other class's head teacher: not found
    client.post("/logout", data={"csrf_token": csrf(client, "/flags")})
    login(client, "t.head2")
    assert client.get(f"/flags/{fid}").status_code == 404


def test_county_queue_lists_escalated_flags_by_school(client, world, ctx):
    from mh_platform.services import concerns, escalation

    fid = concerns.submit_concern(ctx, world.actors["head"], student_id=world.students[4], category="mood",
                                  urgency="soon", note="")["flag_id"]
    ctx.clock.advance(hours=25)
    assert escalation.sweep(ctx, ctx.now())["escalated"][0]["to_tier"] == "county"
    login(client, "t.county")
    page = client.get("/flags").get_data(as_text=True)
    assert f'data-flag="{fid}"' in page and "第一中学" in page and "学生k1" not in page  # pseudonyms only
    home = client.get("/").get_data(as_text=True)
    assert "待处理预警" in home
