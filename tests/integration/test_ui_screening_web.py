"""Screening pages found by the browser walkthrough: links shown only to roles that may follow them,
classes in natural order (七年级 → 八年级 → 九年级, 2班 before 10班), titles with the site suffix."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from screening_world import app, build_world, class_units, make_user, quick_argon2, roster_rows, to_csv  # noqa: F401 - fixtures

from mh_platform.core.types import Role

CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
PASSWORD = "correct horse 1"
GRADES = (("九年级", 9, 2011), ("七年级", 7, 2013), ("八年级", 8, 2012))


@pytest.fixture
def school(ctx):
    """Three grades of ten classes each (imported out of order), a head teacher of one class, a school
    leader, and a campaign for the three grades, open now."""
    from mh_platform.services import campaigns, roster

    world = build_world(ctx)
    rows = []
    for i, (grade, _level, born) in enumerate(GRADES):
        rows += roster_rows(classes=10, per_class=1, grade=grade, start=i * 100, birth_year=born)
    roster.commit(ctx, world.counsellor, to_csv(rows), "r.csv")
    classes = class_units(ctx, world.school)
    first = next(c for c in classes if c.grade_level == 7 and c.name.endswith("1班") and "10" not in c.name)
    make_user(ctx, "t.head", Role.HEAD_TEACHER, first.id)
    make_user(ctx, "t.leader", Role.SCHOOL_LEADER, world.school.id)
    now = ctx.now()
    cid = campaigns.create(ctx, world.counsellor, name="普测", unit_ids=[world.school.id], grades=[7, 8, 9],
                           opens_at=now - timedelta(minutes=1), closes_at=now + timedelta(days=3))
    campaigns.open_due(ctx, now)
    return world, cid, classes


def as_user(app, username):
    client = app.test_client()
    token = CSRF_RE.search(client.get("/login").get_data(as_text=True)).group(1)
    r = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": token})
    assert r.status_code in (302, 303)
    return client


def main_links(html: str) -> list[str]:
    """The links of the page's content (not the top bar)."""
    body = html.split('<main', 1)[1].split("</main>", 1)[0]
    return [h.replace("&amp;", "&") for h in re.findall(r'<a [^>]*href="(/[^"]*)"', body)]


def expected_order(names_levels):
    return [n for n, _lv in sorted(names_levels, key=lambda x: (x[1], int(re.search(r"(\d+)班", x[0]).group(1))))]


def test_screening_links_shown_only_with_permission(app, school):
    world, cid, classes = school
    seen_todo = {}
    for user in ("t.counsellor", "t.head", "t.leader", "t.county", "t.city"):
        client = as_user(app, user)
        index = client.get("/screening/")
        assert index.status_code == 200
        links = main_links(index.get_data(as_text=True))
        assert ("/screening/consent" in links) == (user in ("t.counsellor", "t.head")), user
        assert ("/screening/roster" in links) == (user == "t.counsellor"), user
        campaign_pages = [lk for lk in links if lk.startswith(f"/screening/{cid}")]
        assert campaign_pages, user
        to_visit = list(dict.fromkeys(links))
        for link in to_visit:
            assert client.get(link).status_code == 200, (user, link)
        page = client.get(f"/screening/{cid}").get_data(as_text=True)
        todo = [lk for lk in main_links(page) if lk.endswith("/todo")]
        seen_todo[user] = len(todo)
        for link in main_links(page):
            assert client.get(link).status_code == 200, (user, link)
    assert seen_todo["t.counsellor"] == 30 and seen_todo["t.head"] == 1
    assert seen_todo["t.leader"] == 0 and seen_todo["t.county"] == 0 and seen_todo["t.city"] == 0


def test_classes_in_grade_then_number_order(app, ctx, school):
    from mh_platform.services import completion, consent

    world, cid, classes = school
    want = expected_order([(c.name, c.grade_level) for c in classes])
    assert want[0].startswith("七年级") and want[-1].startswith("九年级") and "10班" in want[9]
    rep = completion.completion(ctx, world.counsellor, cid)
    assert [r.name for r in rep.rows] == want
    assert [c.class_name for c in consent.coverage(ctx, world.counsellor)] == want
    client = as_user(app, "t.counsellor")
    for path in (f"/screening/{cid}", "/screening/consent"):
        html = client.get(path).get_data(as_text=True)
        shown = [n for n in re.findall(r">([^<>]*\d+班)<", html)]
        assert shown == want, path


def test_screening_pages_have_unique_ids(app, school):
    from html_ids import assert_clean

    world, cid, classes = school
    first = classes[0].id
    for user, paths in (("t.counsellor", ["/screening/", f"/screening/{cid}", "/screening/consent",
                                          f"/screening/consent/{first}", f"/screening/{cid}/class/{first}/todo",
                                          "/screening/roster", "/screening/new", f"/screening/{cid}/paper"]),
                        ("t.leader", ["/screening/", f"/screening/{cid}"]),
                        ("t.county", ["/screening/", f"/screening/{cid}", "/screening/new"])):
        client = as_user(app, user)
        for path in paths:
            r = client.get(path)
            assert r.status_code == 200, (user, path)
            assert_clean(r.get_data(as_text=True), f"{user} {path}")


SUFFIX = " · 学生心理健康预警平台</title>"


def test_page_shell_titles_viewport_and_favicon(app, school):
    world, cid, classes = school
    anonymous = app.test_client()
    r = anonymous.get("/favicon.ico")  # what a browser asks for on /s/* and printouts: no login needed
    assert r.status_code == 200 and r.mimetype == "image/svg+xml" and b"<svg" in r.data
    student = anonymous.get("/s/").get_data(as_text=True)
    assert "<title>" in student  # the student entrance renders (its icon comes from /favicon.ico)
    client = as_user(app, "t.counsellor")
    first = classes[0].id
    for path in ("/screening/", f"/screening/{cid}", "/screening/consent", f"/screening/consent/{first}",
                 f"/screening/{cid}/class/{first}/todo", "/screening/roster", "/screening/new",
                 f"/screening/{cid}/paper"):
        html = client.get(path).get_data(as_text=True)
        title = re.search(r"<title>.*?</title>", html, re.S).group(0)
        assert title.endswith(SUFFIX) and title != "<title>学生心理健康预警平台</title>", (path, title)
    page = client.get(f"/screening/{cid}").get_data(as_text=True)
    tok = CSRF_RE.search(page).group(1)
    r = client.post(f"/screening/{cid}/class/{first}/slips", data={"csrf_token": tok})
    assert r.status_code == 200
    slips = r.get_data(as_text=True)
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in slips
    assert 'rel="icon"' in slips and "favicon.svg" in slips
    assert re.search(r"<title>[^<]*</title>", slips).group(0).endswith(SUFFIX)
