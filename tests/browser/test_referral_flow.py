"""A real browser (Debian's chromium through Playwright): the counsellor opens a case from a confirmed
red flag and makes a green-channel referral; the clinician of the addressed institution finds it in
the inbox and accepts it; the other institution's clinician cannot open it. No CSP violation, no
third-party request, no student name on the clinician's pages."""

from __future__ import annotations

import pytest

from mh_platform.web.app import create_app
from tests.browser.kit import launch, live_server, login, logout, watch_errors
from tests.integration.cases_world import PASSWORD, build, confirmed_flag

pytestmark = pytest.mark.browser



@pytest.fixture
def quick_hashes(monkeypatch):
    from argon2 import PasswordHasher

    from mh_platform.services import passwords

    monkeypatch.setattr(passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def server(fresh_ctx, quick_hashes):
    ctx = fresh_ctx
    world = build(ctx, n=2)
    flag = confirmed_flag(ctx, world.students[0], "red")
    with live_server(create_app(ctx=ctx)) as base:
        yield base, world, flag


def _login(page, base, username):
    login(page, base, username, PASSWORD)


def test_counsellor_refers_and_clinician_accepts(server):
    from playwright.sync_api import sync_playwright

    base, world, flag = server
    with sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(viewport={"width": 1024, "height": 900}, locale="zh-CN")
            page = context.new_page()
            problems = watch_errors(page)
            outside: list[str] = []
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(base) else None)

            # the counsellor: open a case from the confirmed flag, then refer through the green channel
            _login(page, base, "counsellor.a")
            page.goto(f"{base}/cases")
            page.fill("#openable textarea[name=summary]", "访谈复核确认：有具体自伤计划")
            page.click(f"#open-{flag}")
            page.wait_for_url(f"{base}/cases/*")
            assert "访谈复核确认：有具体自伤计划" in page.locator("main").inner_text()
            page.select_option("#referral-form-institution_id", str(world.inst1))
            page.fill("#referral-form textarea[name=reason]", "持续自伤念头，需要专业评估")
            page.click("#send-referral")
            page.wait_for_load_state()
            assert "已申请，待机构受理" in page.locator("#referrals").inner_text()
            case_url = page.url
            logout(page, base)

            # the other institution's clinician sees nothing
            _login(page, base, "clinician.two")
            page.goto(f"{base}/referrals")
            assert page.locator("#no-referrals").count() == 1
            logout(page, base)

            # the addressed institution's clinician accepts it
            _login(page, base, "clinician.one")
            assert page.locator("#panel-cases-clinician .count").inner_text() == "1"
            page.goto(f"{base}/referrals")
            page.click("#referral-list .open-referral")
            page.wait_for_url(f"{base}/referrals/*")
            referral_url = page.url
            text = page.locator("main").inner_text()
            assert "持续自伤念头，需要专业评估" in text and "兴隆台实验中学" in text
            assert "学生甲0" not in page.content()  # minimum-necessary view: no name
            page.click("#do-accept")
            page.wait_for_load_state()
            assert page.locator("#referral-state").inner_text() == "机构已受理"
            assert page.locator("#form-schedule").count() == 1  # next: schedule the appointment
            resp = page.goto(case_url)
            assert resp.status == 404  # a clinician never opens the school's case
            logout(page, base)

            _login(page, base, "clinician.two")
            resp = page.goto(referral_url)
            assert resp.status == 404
            logout(page, base)

            # back at school the counsellor sees the accepted referral
            _login(page, base, "counsellor.a")
            page.goto(case_url)
            assert "机构已受理" in page.locator("#referrals").inner_text()

            assert not [x for x in problems if "404" not in x], problems  # includes any CSP violation
            assert not outside, outside
        finally:
            browser.close()
