"""A real browser (Debian's chromium through Playwright): a class monitor logs a concern about a
classmate; the head teacher finds it in the class queue and pushes it to the school with a reason;
the counsellor acknowledges it with one click in the school queue. The monitor then sees only the
concern's progress — never a level, a tier or the flag."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from mh_platform.db.models import Flag
from mh_platform.web.app import create_app
from tests.browser.kit import launch, live_server, login, logout, watch_errors
from tests.integration.flags_world import PASSWORD, build_world, light_hashes

pytestmark = pytest.mark.browser



@pytest.fixture
def server(fresh_ctx, monkeypatch):
    light_hashes(monkeypatch)
    world = build_world(fresh_ctx, n=3, emails=False)
    with live_server(create_app(ctx=fresh_ctx)) as base:
        yield base, world, fresh_ctx


def _login(page, base, username):
    login(page, base, username, PASSWORD)


def test_monitor_concern_head_teacher_pushes_counsellor_acknowledges(server):
    from playwright.sync_api import sync_playwright

    base, world, ctx = server
    with sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(viewport={"width": 1024, "height": 900}, locale="zh-CN")
            page = context.new_page()
            problems = watch_errors(page)

            # the monitor logs a concern about a classmate
            _login(page, base, "t.monitor")
            page.goto(f"{base}/concerns")
            page.select_option("#f-student", str(world.students[1]))
            page.select_option("#f-category", "withdrawal")
            page.check("#urgency-soon")
            page.fill("#f-note", "这周一直一个人坐着，不和任何人说话")
            page.click("#submit-concern")
            page.wait_for_selector(".flash-info")
            assert page.inner_text(".concern-status") == "已收到"
            assert "橙" not in page.content() and "/flags/" not in page.content()
            assert page.goto(f"{base}/flags").url.endswith("/concerns")  # no flag queue for a monitor
            logout(page, base)

            with ctx.uow() as uow:
                fid = str(uow.session.scalar(sa.select(Flag.id).where(Flag.student_id == world.students[1])))

            # the head teacher sees it in the class queue and pushes it to the school
            _login(page, base, "t.head")
            page.goto(f"{base}/flags")
            row = page.locator(f'tr[data-flag="{fid}"]')
            assert row.count() == 1 and "班级" in row.inner_text() and "橙色" in row.inner_text()
            row.locator(".flag-link").click()
            page.wait_for_url(f"{base}/flags/{fid}")
            assert page.locator("#evidence").count() == 0  # no scores or answers for the head teacher
            page.fill("#reason-escalate", "需要心理老师尽快访谈")
            page.click("#do-escalate")
            page.wait_for_selector(".flash-info")
            assert page.get_attribute("#flag-tier", "data-tier") == "school"
            logout(page, base)

            # the counsellor acknowledges it with one click in the school queue
            _login(page, base, "t.counsellor")
            page.goto(f"{base}/flags")
            page.click(f"#ack-{fid}")
            page.wait_for_selector(".flash-info")
            page.goto(f"{base}/flags/{fid}")
            assert page.get_attribute("#flag-status", "data-status") == "acknowledged"
            assert "需要心理老师尽快访谈" not in page.content()  # reasons open only on request (logged)
            page.goto(f"{base}/flags/{fid}?reasons=1")
            assert "需要心理老师尽快访谈" in page.content()
            logout(page, base)

            # the monitor sees progress only
            _login(page, base, "t.monitor")
            page.goto(f"{base}/concerns")
            assert page.inner_text(".concern-status") == "处理中"
            assert problems == []
            assert page.goto(f"{base}/flags/{fid}").status == 404
        finally:
            browser.close()
