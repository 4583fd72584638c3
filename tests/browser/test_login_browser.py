"""A real browser (Debian's chromium through Playwright) at phone size: sign in as a counsellor, see
the home page in Chinese, switch to English, sign out; no CSP violation, no horizontal scrolling,
and nothing of the session left after logout."""

from __future__ import annotations

import pytest

from mh_platform.core.types import Role, UnitKind
from mh_platform.services import auth
from mh_platform.services.context import SYSTEM
from mh_platform.services.org import add_unit
from mh_platform.web.app import create_app
from tests.browser.kit import launch, live_server, watch_errors  # noqa: E402

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery 1"


@pytest.fixture
def server(fresh_ctx):
    ctx = fresh_ctx
    with ctx.uow() as uow:
        s, now = uow.session, ctx.now()
        city = add_unit(s, kind=UnitKind.CITY, name="盘锦市", code="b-city", parent=None, now=now)
        county = add_unit(s, kind=UnitKind.COUNTY, name="大洼区", code="b-k", parent=city, now=now)
        school = add_unit(s, kind=UnitKind.SCHOOL, name="大洼区实验中学", code="b-s", parent=county, now=now,
                          stage="junior")
        uow.commit()
    auth.create_user(ctx, SYSTEM, username="b.counsellor", password=PASSWORD, role=Role.COUNSELLOR, unit_id=school.id,
                     display_name="李老师")
    with live_server(create_app(ctx=ctx)) as base:
        yield base


def test_counsellor_signs_in_on_a_phone_switches_language_and_signs_out(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(viewport={"width": 360, "height": 740}, device_scale_factor=2,
                                          is_mobile=True, has_touch=True, locale="zh-CN")
            page = context.new_page()
            problems = watch_errors(page)
            outside: list[str] = []
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(server) else None)

            page.goto(f"{server}/")
            assert page.url == f"{server}/login?next=/"
            assert page.locator("h1").inner_text() == "登录"
            page.fill("#username", "b.counsellor")
            page.fill("#password", PASSWORD)
            page.click("#submit")
            page.wait_for_url(f"{server}/")

            assert page.locator("#role-label").inner_text() == "心理教师"
            assert "大洼区实验中学" in page.locator("#unit-name").inner_text()
            assert page.locator("#waiting-title").inner_text() == "待您处理"
            assert "您好，李老师" in page.locator("h1").inner_text()
            # phone size: nothing wider than the screen
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            # the stylesheet is applied (served locally, allowed by the CSP)
            assert page.evaluate("getComputedStyle(document.querySelector('.topbar')).backgroundColor") \
                == "rgb(31, 78, 121)"

            page.click("#lang-en")
            page.wait_for_load_state()
            assert page.locator("#waiting-title").inner_text() == "Waiting for you"
            assert page.locator("#role-label").inner_text() == "School counsellor"
            assert page.locator("html").get_attribute("lang") == "en"

            page.click("#logout")
            page.wait_for_url(f"{server}/login")
            assert page.locator("h1").inner_text() == "Log in"
            assert "You have signed out." in page.content()
            # Back does not bring the home page (or the unit) back from cache
            page.go_back()
            page.wait_for_load_state()
            assert "大洼区实验中学" not in page.content()
            page.goto(f"{server}/")
            assert page.url.startswith(f"{server}/login")

            assert not problems, problems  # includes any Content-Security-Policy violation
            assert not outside, outside  # no CDN, no third party
        finally:
            browser.close()
