"""A student on a phone (Debian's chromium through Playwright): answers a full battery with per-item
autosave, closes the tab midway and resumes without losing an answer, sees help at once on a critical
item, and leaves nothing readable for the next student on the same browser."""

from __future__ import annotations

import json
import pathlib
import sys

import pytest
import sqlalchemy as sa

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))

from screening_world import build_world, screening_ready  # noqa: E402

from mh_platform.core.instruments import load_instrument  # noqa: E402
from mh_platform.db.models import Response  # noqa: E402
from mh_platform.web.app import create_app  # noqa: E402
from tests.browser.kit import launch, live_server  # noqa: E402

pytestmark = pytest.mark.browser

BATTERY = ("phq9", "gad7", "asq", "k10", "who5")


@pytest.fixture
def server(fresh_ctx, monkeypatch):
    from argon2 import PasswordHasher

    from mh_platform.services import passwords

    monkeypatch.setattr(passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    ctx = fresh_ctx
    world = build_world(ctx)
    cid, codes, refused, hts = screening_ready(ctx, world, per_class=3, refused=1)
    with live_server(create_app(ctx=ctx)) as base:
        yield base, ctx, codes


def safe_value(inst, n):
    it = inst.item(n)
    crit = {c.item: c for c in inst.critical_items}.get(n)
    vals = [o.value for o in it.options if crit is None or o.value not in crit.levels]
    return vals[len(vals) // 2] if it.kind != "yes_no" else vals[0]


def answer(page, n, value):
    with page.expect_response(lambda r: r.url.endswith("/s/answer") and r.request.method == "POST") as info:
        page.check(f"#i{n}-{value}")
    resp = info.value
    assert resp.status == 200, resp.text()
    return resp.json()


def test_phone_battery_resume_and_clean_exit(server):
    from playwright.sync_api import sync_playwright

    base, ctx, codes = server
    sid, code = next(iter(codes.items()))
    given: dict[str, dict[str, object]] = {}
    with sync_playwright() as p:
        browser = launch(p)
        try:
            context = browser.new_context(viewport={"width": 360, "height": 740}, device_scale_factor=2,
                                          is_mobile=True, has_touch=True, locale="zh-CN")
            problems: list[str] = []

            def watch(page):
                # CSP violations and script errors; failed loads are checked by URL below (favicon aside)
                page.on("console", lambda m: problems.append(m.text)
                        if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.on("response", lambda r: problems.append(f"{r.status} {r.url}")
                        if r.status >= 400 and not r.url.endswith("/favicon.ico") else None)
                return page

            page = watch(context.new_page())
            page.goto(f"{base}/s/")
            page.fill("#code", code[:5].lower() + " " + code[5:])
            page.click("#start")
            page.wait_for_url(f"{base}/s/p/phq9")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            assert page.locator("#progress").get_attribute("value") == "0"
            phq9 = load_instrument("phq9")
            given["phq9"] = {}
            for n in range(1, 6):  # half the page, autosaved one by one
                v = safe_value(phq9, n)
                assert answer(page, n, v)["saved"] is True
                given["phq9"][str(n)] = v
            page.close()  # the tab is closed midway

            page = watch(context.new_page())  # same browser, new tab: resumes where it stopped
            page.goto(f"{base}/s/")
            page.wait_for_url(f"{base}/s/p/phq9")
            for n in range(1, 6):
                assert page.is_checked(f"#i{n}-{given['phq9'][str(n)]}"), n
            assert page.locator("#help").is_hidden()
            for n in range(6, phq9.n_items + 1):
                v = 1 if n == 9 else safe_value(phq9, n)  # item 9 answered positively
                res = answer(page, n, v)
                given["phq9"][str(n)] = v
                if n == 9:
                    assert res["critical"] is True
                    page.wait_for_selector("#help", state="visible")  # at once, before submitting
                    assert "12356" in page.locator("#help").inner_text()
            page.click("#next")
            page.wait_for_selector("#continue")
            page.click("#continue")
            for iid in BATTERY[1:]:
                page.wait_for_url(f"{base}/s/p/{iid}")
                inst = load_instrument(iid)
                given[iid] = {}
                for it in inst.items:
                    v = safe_value(inst, it.number)
                    answer(page, it.number, v)
                    given[iid][str(it.number)] = v
                assert int(page.locator("#progress").get_attribute("value")) > 0
                page.click("#next")
            page.wait_for_url(f"{base}/s/done")
            assert "已完成" in page.locator("#done-title").inner_text()

            # nothing left for the next student on this browser
            assert page.evaluate("window.localStorage.length") == 0
            assert page.evaluate("window.sessionStorage.length") == 0
            assert [c["name"] for c in context.cookies()] == []
            page.go_back()  # the last answer page: not served from cache, no answers shown
            page.wait_for_load_state()
            assert page.url.rstrip("/").endswith("/s")
            assert page.locator("input[type=radio]:checked").count() == 0
            assert "code" in page.content() and problems == []
        finally:
            browser.close()

    with ctx.uow() as uow:
        s = uow.session
        rows = {r.instrument_id: r for r in s.scalars(sa.select(Response).where(Response.student_id == sid))}
        assert set(rows) == set(BATTERY) and all(r.status == "submitted" for r in rows.values())
        for iid, r in rows.items():
            got = json.loads(ctx.keyring.open_field(s, r.answers_enc, table="response", column="answers_enc",
                                                    row_id=r.id))
            assert got == given[iid], iid  # nothing lost, nothing changed
        assert rows["phq9"].critical_fired and rows["phq9"].concern_level == "red"


def test_a_cookie_copied_before_leaving_opens_nothing_in_another_browser(server):
    """T21 with a copied cookie: student A answers PHQ-9 item 9, someone copies the student cookie,
    A presses "leave for now"; a second browser carrying the copy lands on code entry with nothing
    checked, and an autosave sent with the copy is refused (401 signed_out) and writes nothing."""
    from playwright.sync_api import sync_playwright

    base, ctx, codes = server
    sid, code = list(codes.items())[1]
    with sync_playwright() as p:
        browser = launch(p)
        try:
            a = browser.new_context(locale="zh-CN")
            page = a.new_page()
            page.goto(f"{base}/s/")
            page.fill("#code", code)
            page.click("#start")
            page.wait_for_url(f"{base}/s/p/phq9")
            assert answer(page, 9, 3)["saved"] is True
            copied = [c for c in a.cookies() if c["name"] == "mhp_student"]
            assert len(copied) == 1
            control = browser.new_context(locale="zh-CN")  # before leaving, the copy reads item 9
            control.add_cookies(copied)
            shown = control.new_page()
            shown.goto(f"{base}/s/p/phq9")
            assert shown.is_checked("#i9-3")
            control.close()
            page.click("#pause")
            page.wait_for_selector("#done-title")
            assert [c["name"] for c in a.cookies()] == []

            b = browser.new_context(locale="zh-CN")
            b.add_cookies(copied)
            other = b.new_page()
            other.goto(f"{base}/s/p/phq9")  # redirects are followed: where it ends is what the copy gets
            assert other.url == f"{base}/s/"
            assert other.locator("#code").count() == 1 and other.locator("input[type=radio]").count() == 0
            assert "i9-3" not in other.content()

            b.add_cookies(copied)  # an autosave with the copy: refused like no cookie, nothing written
            stale = b.new_page()
            stale.goto(f"{base}/s/")  # a CSRF token of this browser's session for the raw request
            token = stale.locator('meta[name="csrf-token"]').get_attribute("content")
            b.add_cookies(copied)
            assert [c["value"] for c in b.cookies() if c["name"] == "mhp_student"] == [copied[0]["value"]]
            r = stale.request.post(f"{base}/s/answer", data=json.dumps({"instrument": "phq9", "item": 1, "value": 3}),
                                   headers={"Content-Type": "application/json", "X-CSRFToken": token})
            assert r.status == 401 and r.json() == {"saved": False, "error": "signed_out"}
        finally:
            browser.close()
    with ctx.uow() as uow:
        rows = uow.session.execute(sa.select(Response.instrument_id, Response.n_answered)
                                   .where(Response.student_id == sid)).all()
    assert rows == [("phq9", 1)]  # only A's own answer, nothing from the copy
