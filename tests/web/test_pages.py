"""Role home pages (Chinese first, English on request), the panel registry, the roster page, errors."""

from __future__ import annotations

import pytest
from web_helpers import csrf_token, login

from mh_platform.core.types import Role
from mh_platform.web import home

ROLE_ZH = {
    Role.CLASS_MONITOR: "心理委员", Role.HEAD_TEACHER: "班主任", Role.COUNSELLOR: "心理教师",
    Role.SCHOOL_LEADER: "分管校长", Role.COUNTY_OFFICER: "县区教育局", Role.CITY_OFFICER: "市教育局",
    Role.CLINICIAN: "精神卫生机构", Role.SYSADMIN: "系统管理员",
}


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_every_role_has_a_home_page_in_chinese(client, city, role):
    r = login(client, city.users[role])
    assert r.status_code == 302 and r.headers["Location"] == "/"
    html = client.get("/").get_data(as_text=True)
    assert ROLE_ZH[role] in html
    assert "待您处理" in html
    expected_unit = {
        Role.CLASS_MONITOR: city.home_class.name, Role.HEAD_TEACHER: city.home_class.name,
        Role.COUNSELLOR: city.home_school.name, Role.SCHOOL_LEADER: city.home_school.name,
        Role.COUNTY_OFFICER: city.home_county.name, Role.CITY_OFFICER: city.city.name,
        Role.CLINICIAN: "盘锦市精神卫生中心", Role.SYSADMIN: None,
    }[role]
    if expected_unit:
        assert expected_unit in html
    # no other county, school or class is named on anyone's home page
    for school in city.schools:
        if school.id != city.home_school.id:
            assert school.name not in html


def test_counsellor_home_counts_students_of_own_school(client, city):
    login(client, city.users[Role.COUNSELLOR])
    html = client.get("/").get_data(as_text=True)
    assert 'id="panel-main-roster"' in html
    assert '<a href="/roster">8</a>' in html


def test_sysadmin_home_shows_accounts_not_students(ctx, client, city):
    from mh_platform.services import auth
    from mh_platform.services.context import SYSTEM

    auth.set_active(ctx, SYSTEM, city.user_ids[Role.HEAD_TEACHER], False)
    login(client, city.users[Role.SYSADMIN])
    html = client.get("/").get_data(as_text=True)
    assert 'id="panel-main-accounts"' in html and "已停用账户：1" in html
    assert 'id="panel-main-roster"' not in html
    assert client.get("/roster").status_code == 404


def test_registered_panels_show_for_their_roles_only(monkeypatch, client, city):
    seen = []

    def loader(ctx, actor):
        seen.append(actor.role)
        return home.PanelData(count=3, lines=[home.PanelLine("待复核 3", level="red")])

    def broken(ctx, actor):
        raise RuntimeError("boom")

    monkeypatch.setitem(home.HOME_PANELS, "test.queue",
                        home.HomePanel("test.queue", "测试队列", frozenset({Role.HEAD_TEACHER}), loader, order=1,
                                       urgent=True))
    monkeypatch.setitem(home.HOME_PANELS, "test.broken",
                        home.HomePanel("test.broken", "坏的面板", frozenset({Role.HEAD_TEACHER}), broken, order=2))
    client.application.config["MHP_PROPAGATE_ERRORS"] = False
    login(client, city.users[Role.HEAD_TEACHER])
    html = client.get("/").get_data(as_text=True)
    assert 'class="panel urgent" id="panel-test-queue"' in html and "测试队列" in html and "待复核 3" in html
    assert 'id="panel-test-broken"' in html and "暂时无法显示" in html
    assert html.index("panel-test-queue") < html.index("panel-main-roster")  # ordered
    assert seen == [Role.HEAD_TEACHER]
    other = client.application.test_client()
    login(other, city.users[Role.COUNSELLOR])
    assert "测试队列" not in other.get("/").get_data(as_text=True)


def test_language_switch_to_english_and_back(client, city):
    login(client, city.users[Role.COUNSELLOR])
    r = client.post("/lang", data={"lang": "en", "next": "/", "csrf_token": csrf_token(client, "/")})
    assert r.status_code == 302 and r.headers["Location"] == "/"
    html = client.get("/").get_data(as_text=True)
    assert "Waiting for you" in html and "School counsellor" in html and 'lang="en"' in html
    assert "待您处理" not in html
    client.post("/lang", data={"lang": "zh_CN", "csrf_token": csrf_token(client, "/")})
    assert "待您处理" in client.get("/").get_data(as_text=True)


def test_language_choice_survives_login_and_ignores_unknown(client, city):
    client.post("/lang", data={"lang": "en", "csrf_token": csrf_token(client)})
    assert "Log in" in client.get("/login").get_data(as_text=True)
    login(client, city.users[Role.HEAD_TEACHER])
    assert "Head teacher" in client.get("/").get_data(as_text=True)
    client.post("/lang", data={"lang": "fr", "csrf_token": csrf_token(client, "/")})
    assert "Head teacher" in client.get("/").get_data(as_text=True)


def test_lang_next_is_never_an_open_redirect(client):
    for target in ("https://evil.example/", "//evil.example/", "/\\evil"):
        r = client.post("/lang", data={"lang": "en", "next": target, "csrf_token": csrf_token(client)})
        assert r.headers["Location"] in ("/", "/login")


def test_login_next_is_followed_only_locally(client, city):
    r = client.get("/roster")
    assert r.headers["Location"] == "/login?next=/roster"
    token = csrf_token(client, "/login?next=/roster")
    r = client.post("/login?next=/roster", data={"username": city.users[Role.HEAD_TEACHER],
                                                  "password": "correct horse battery 1", "csrf_token": token})
    assert r.headers["Location"] == "/roster"
    client2 = client.application.test_client()
    token = csrf_token(client2, "/login")
    r = client2.post("/login?next=//evil.example", data={"username": city.users[Role.COUNSELLOR],
                                                          "password": "correct horse battery 1", "csrf_token": token})
    assert r.headers["Location"] == "/"


def test_monitor_roster_page_lists_own_class_names_only(client, city):
    login(client, city.users[Role.CLASS_MONITOR])
    html = client.get("/roster").get_data(as_text=True)
    for name, cls, _s, _k in city.students.values():
        assert (name in html) == (cls.id == city.home_class.id)
    assert "学籍号" not in html and "SN0" not in html


def test_school_leader_roster_is_pseudonymous(client, city):
    login(client, city.users[Role.SCHOOL_LEADER])
    html = client.get("/roster").get_data(as_text=True)
    assert "化名编号" in html
    assert not any(name in html for name, *_ in city.students.values())


def test_error_pages(client, city):
    r = client.get("/no/such/page")
    assert r.status_code == 404 and "未找到" in r.get_data(as_text=True)
    login(client, city.users[Role.COUNSELLOR])
    r = client.get("/no/such/page")
    assert r.status_code == 404 and "未找到，或不在您的权限范围内" in r.get_data(as_text=True)
    r = client.delete("/")
    assert r.status_code in (400, 405)  # CSRF first for unsafe methods; never a 500
