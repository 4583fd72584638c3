"""The student pages over HTTP (Flask test client on the real database): code entry, autosave,
plain form posts, critical-item help, rate limiting with lock-out, and a clean browser at the end."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from screening_world import quick_argon2, ready  # noqa: F401 - fixtures

from mh_platform.core.instruments import load_instrument
from mh_platform.db.models import Response
from mh_platform.web.app import create_app


@pytest.fixture
def client(ctx):
    from mh_platform.web.extensions import limiter

    app = create_app(ctx=ctx, extra_config={"TESTING": True, "MHP_PROPAGATE_ERRORS": True})
    limiter.reset()
    return app.test_client()


def csrf(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def enter(client, code: str):
    page = client.get("/s/")
    return client.post("/s/", data={"code": code, "csrf_token": csrf(page.text)})


def test_code_entry_autosave_and_plain_posts(ctx, ready, client):
    world, cid, codes, refused, hts = ready
    sid, code = next(iter(codes.items()))
    r = enter(client, code[:5] + "-" + code[5:].lower())
    assert r.status_code == 303 and r.headers["Location"].endswith("/s/p/phq9")
    cookie = r.headers.getlist("Set-Cookie")
    assert any(c.startswith("mhp_student=") and "HttpOnly" in c and "SameSite=Strict" in c and "Path=/s" in c
               for c in cookie)
    page = client.get("/s/p/phq9")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert "<fieldset" in page.text and "<legend>" in page.text and 'type="radio"' in page.text
    assert "<script>" not in page.text and "student.js" in page.text  # no inline script (CSP)
    token = csrf(page.text)
    # autosave one answer at a time (JSON), including a positive critical item (PHQ-9 item 9)
    r = client.post("/s/answer", json={"instrument": "phq9", "item": 1, "value": 2, "ms": 4000},
                    headers={"X-CSRFToken": token})
    assert r.status_code == 200 and r.json == {"saved": True, "n": 1, "critical": False}
    r = client.post("/s/answer", json={"instrument": "phq9", "item": 9, "value": 1}, headers={"X-CSRFToken": token})
    assert r.json["critical"] is True
    # not an option / not in the battery / no CSRF header
    assert client.post("/s/answer", json={"instrument": "phq9", "item": 1, "value": 7},
                       headers={"X-CSRFToken": token}).status_code == 422
    assert client.post("/s/answer", json={"instrument": "scared", "item": 1, "value": 0},
                       headers={"X-CSRFToken": token}).status_code == 422
    assert client.post("/s/answer", json={"instrument": "phq9", "item": 2, "value": 0}).status_code == 400
    # reload: answers come back pre-selected, and the help stays visible
    page = client.get("/s/p/phq9")
    assert 'id="i1-2"' in page.text and re.search(r'id="i1-2"[^>]*checked', page.text)
    assert 'id="help"' in page.text and 'id="help" role="alert" aria-live="assertive" tabindex="-1" hidden' not in page.text
    # the rest of the page as a plain form post (no JavaScript)
    inst = load_instrument("phq9")
    form = {"csrf_token": token} | {f"i{it.number}": str(it.options[0].value) for it in inst.items if it.number not in (1, 9)}
    r = client.post("/s/p/phq9", data=form)
    assert r.status_code == 200 and "12356" in r.text and 'id="continue"' in r.text  # help before going on
    assert re.search(r'href="/s/p/gad7"', r.text)
    with ctx.uow() as uow:
        resp = uow.session.scalar(sa.select(Response).where(Response.student_id == sid, Response.instrument_id == "phq9"))
        assert resp.status == "submitted" and resp.critical_fired and resp.concern_level == "red"
        assert resp.item_ms["1"] == 4000
    # the other pages, then done: cookie and session cleared, site data cleared
    for iid in ("gad7", "asq", "k10", "who5"):
        inst = load_instrument(iid)
        page = client.get(f"/s/p/{iid}")
        assert page.status_code == 200
        values = {}
        for it in inst.items:
            safe = [o.value for o in it.options if not any(it.number == c.item and o.value in c.levels
                                                             for c in inst.critical_items)]
            values[f"i{it.number}"] = str(safe[0])
        r = client.post(f"/s/p/{iid}", data={"csrf_token": csrf(page.text)} | values)
        assert r.status_code == 303
    assert r.headers["Location"].endswith("/s/done")
    done = client.get("/s/done")
    assert "已完成" in done.text and done.headers["Clear-Site-Data"] == '"cache", "cookies", "storage"'
    assert any(c.startswith("mhp_student=;") for c in done.headers.getlist("Set-Cookie"))
    assert client.get("/s/p/phq9").status_code == 302  # back button: no answers, back to code entry
    r = enter(client, code)
    assert r.status_code == 403 and "已完成" in r.text  # finished codes do not open again


def test_refused_consent_and_wrong_codes(ctx, ready, client):
    world, cid, codes, refused, hts = ready
    assert not set(refused) & set(codes)
    r = enter(client, "ABCDE-FGHJK")
    assert r.status_code == 403 and "验证码无效" in r.text
    assert enter(client, "not a code!").status_code == 403
    assert client.get("/s/p/phq9").status_code == 302  # no cookie: back to code entry


def test_after_a_mistyped_code_the_form_on_the_error_page_takes_the_right_one(ctx, ready, client):
    """A student mistypes the code, then types the right one into the form the error page shows:
    that form's CSRF token must belong to the session the error page left (it was emptied first)."""
    world, cid, codes, refused, hts = ready
    r = enter(client, "ABCDE-FGHJK")
    assert r.status_code == 403 and "验证码无效" in r.text
    good = next(iter(codes.values()))
    r = client.post("/s/", data={"code": good, "csrf_token": csrf(r.text)})  # from the error page, no reload
    assert r.status_code == 303 and "/s/p/" in r.headers["Location"]
    # an expired form in the student area leads back to code entry, not to the staff home
    r = client.application.test_client().post("/s/", data={"code": good, "csrf_token": "stale"})
    assert r.status_code == 400 and 'href="/s/"' in r.text and 'href="/"' not in r.text


def test_a_page_submitted_with_blank_items_comes_back_once_naming_them_and_then_goes_on(ctx, ready, client):
    """Nothing is forced: the given answers are saved, the page comes back once naming the blank
    items, and a second submit goes on (with the blank items left blank)."""
    import sqlalchemy as sa

    from mh_platform.db.models import Response

    world, cid, codes, refused, hts = ready
    sid, code = next(iter(codes.items()))
    enter(client, code)
    token = csrf(client.get("/s/p/phq9").text)
    form = {"csrf_token": token, **{f"i{n}": "1" for n in range(1, 8)}}  # items 8, 9 and 10 left blank
    r = client.post("/s/p/phq9", data=form)
    assert r.status_code == 200 and "还有 3 题没有作答（第 8、9、10 题）" in r.text
    assert 'name="incomplete_ok" value="1"' in r.text
    checked = set(re.findall(r'id="(i\d+-\w+)"[^>]*\bchecked\b', r.text))
    assert checked == {f"i{n}-1" for n in range(1, 8)}  # the given answers are kept, checked
    with ctx.uow() as uow:
        resp = uow.session.scalar(sa.select(Response).where(Response.student_id == sid, Response.instrument_id == "phq9"))
        assert resp.status == "in_progress" and resp.n_answered == 7
    r = client.post("/s/p/phq9", data={**form, "csrf_token": csrf(r.text), "incomplete_ok": "1"})
    assert r.status_code == 303 and r.headers["Location"].endswith("/s/p/gad7")  # on to the next page
    with ctx.uow() as uow:
        resp = uow.session.scalar(sa.select(Response).where(Response.student_id == sid, Response.instrument_id == "phq9"))
        assert resp.status == "submitted" and resp.n_answered == 7 and resp.critical_unanswered
    # a complete page goes straight on
    token = csrf(client.get("/s/p/gad7").text)
    r = client.post("/s/p/gad7", data={"csrf_token": token, **{f"i{n}": "0" for n in range(1, 9)}})
    assert r.status_code == 303


def test_code_entry_lockout_per_ip(ctx, ready, client):
    ctx.settings.extra["student_code_rate_limit"] = "5 per 10 minutes"
    try:
        world, cid, codes, refused, hts = ready
        for _ in range(5):
            assert enter(client, "ABCDE-FGHJK").status_code == 403
        good = next(iter(codes.values()))
        assert enter(client, good).status_code == 429  # locked out, even with a right code
        other_ip = client.application.test_client()
        page = other_ip.get("/s/", environ_base={"REMOTE_ADDR": "10.0.0.9"})
        r = other_ip.post("/s/", data={"code": good, "csrf_token": csrf(page.text)},
                          environ_base={"REMOTE_ADDR": "10.0.0.9"})
        assert r.status_code == 303
    finally:
        ctx.settings.extra.pop("student_code_rate_limit", None)


def test_pause_and_resume_keep_answers(ctx, ready, client):
    world, cid, codes, refused, hts = ready
    code = list(codes.values())[1]
    enter(client, code)
    page = client.get("/s/p/phq9")
    token = csrf(page.text)
    for item, v in ((1, 1), (2, 3)):
        assert client.post("/s/answer", json={"instrument": "phq9", "item": item, "value": v},
                           headers={"X-CSRFToken": token}).json["saved"]
    r = client.post("/s/pause", data={"csrf_token": token})
    assert "已暂停" in r.text and r.headers["Clear-Site-Data"]
    assert client.get("/s/p/phq9").status_code == 302
    r = enter(client, code)
    page = client.get(r.headers["Location"])
    assert re.search(r'id="i1-1"[^>]*checked', page.text) and re.search(r'id="i2-3"[^>]*checked', page.text)


def test_cached_question_html_checks_exactly_the_saved_answers_in_each_language(ctx, ready, client):
    """The questions' HTML is rendered once per instrument and language (student._questions) and only
    the saved answers' radios get "checked" — whatever page, language or student came before."""
    world, cid, codes, refused, hts = ready
    inst = load_instrument("phq9")
    runs = [("zh_CN", {1: 2, 2: 0, 9: 1}), ("en", {3: 3}), ("zh_CN", {}), ("en", {1: 0, 5: 2, 8: 3})]
    for (lang, given), code in zip(runs, list(codes.values())[2:], strict=False):
        client = client.application.test_client()  # a new browser for each student
        enter(client, code)
        page = client.get("/s/p/phq9")
        token = csrf(page.text)
        client.post("/s/lang", data={"lang": lang, "next": "/s/p/phq9", "csrf_token": token})
        for item, v in given.items():
            assert client.post("/s/answer", json={"instrument": "phq9", "item": item, "value": v},
                               headers={"X-CSRFToken": token}).json["saved"]
        page = client.get("/s/p/phq9")
        checked = set(re.findall(r'id="(i\d+-\w+)"[^>]*\bchecked\b', page.text))
        assert checked == {f"i{n}-{v}" for n, v in given.items()}, (lang, given)
        radios = re.findall(r'<input type="radio"[^>]*>', page.text)
        assert len(radios) == sum(len(it.options) for it in inst.items)
        text = inst.items[0].en if lang == "en" else inst.items[0].zh
        assert text and text in page.text


# --------------------------------------------------------------------------- staff pages


def login(client, username: str) -> None:
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    r = client.post("/login", data={"username": username, "password": "correct horse 1", "csrf_token": token})
    assert r.status_code in (302, 303), r.text[:300]


def form_token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def test_staff_pages_campaign_slips_todo_consent(ctx, ready, client):
    world, cid, codes, refused, hts = ready
    login(client, "t.ht1")
    page = client.get(f"/screening/{cid}")
    assert page.status_code == 200 and 'id="completion"' in page.text
    # the battery's K10 has no Chinese wording shipped: staff are told before codes go out
    warning = re.search(r'id="without-chinese"[^>]*>([^<]+)<', page.text)
    assert warning and "k10" in warning.group(1) and "phq9" not in warning.group(1)
    cls = re.search(r'/screening/[0-9a-f-]+/class/([0-9a-f-]+)/slips', page.text).group(1)
    slips = client.post(f"/screening/{cid}/class/{cls}/slips", data={"csrf_token": form_token(page.text)})
    assert slips.status_code == 200 and "@media print" not in slips.text  # print rules live in slips.css
    shown = re.findall(r'class="slip-code">([0-9A-Z]{5}-[0-9A-Z]{5})<', slips.text)
    assert len(shown) == 3 and "未取得监护人同意" in slips.text and slips.headers["Cache-Control"] == "no-store"
    assert codes[next(iter(codes))] not in slips.text.replace("-", "")  # old slips replaced by new codes
    todo = client.get(f"/screening/{cid}/class/{cls}/todo")
    assert todo.status_code == 200 and todo.text.count("未开始") == 3
    cons = client.get(f"/screening/consent/{cls}")
    assert cons.status_code == 200 and cons.text.count('value="withdraw"') == 3
    assert client.get("/screening/consent").status_code == 200
    # a head teacher may not create campaigns or import rosters; other classes are not found
    assert client.get("/screening/new").status_code == 403
    assert client.get("/screening/roster").status_code == 403
    assert client.get(f"/screening/consent/{world.school.id}").status_code == 404


def test_counsellor_creates_campaign_and_previews_roster(ctx, ready, client):
    from screening_world import roster_rows, to_csv

    world, cid, codes, refused, hts = ready
    login(client, "t.counsellor")
    page = client.get("/screening/new")
    r = client.post("/screening/new", data={"csrf_token": form_token(page.text), "name": "春季复测",
                                             "unit": str(world.school.id), "grade": ["7", "8"],
                                             "opens_at": "2026-09-20T08:00", "closes_at": "2026-09-25T17:00"})
    assert r.status_code == 303
    page = client.get(r.headers["Location"])
    assert "春季复测" in page.text and "2026-09-20 08:00" in page.text
    page = client.get("/screening/roster")
    data = to_csv(roster_rows(classes=1, per_class=2, start=50) + [["xlt-s001", "七年级", "1班", "bad!", "王五", "男", "", "", "", ""]])
    import io
    r = client.post("/screening/roster", data={"csrf_token": form_token(page.text), "action": "commit",
                                               "file": (io.BytesIO(data), "r.csv")}, content_type="multipart/form-data")
    assert r.status_code == 200 and 'id="row-errors"' in r.text and "<td>4</td>" in r.text


def test_the_app_reads_every_instrument_at_start(ctx, monkeypatch):
    """Definitions are validated when the app is built (each worker at start), not in a student's
    first page request."""
    from mh_platform.core import instruments

    monkeypatch.setattr(instruments, "_BY_ID", {})
    create_app(ctx=ctx, extra_config={"TESTING": True})
    loaded = {iid for iid, _folder in instruments._BY_ID}
    assert loaded == {p.stem for p in instruments.instrument_files()} and "phq9" in loaded


def test_a_page_post_with_an_unknown_option_shows_the_page_again_with_what_is_saved(ctx, ready, client):
    world, cid, codes, refused, hts = ready
    enter(client, next(iter(codes.values())))
    token = csrf(client.get("/s/p/phq9").text)
    assert client.post("/s/answer", json={"instrument": "phq9", "item": 2, "value": 1},
                       headers={"X-CSRFToken": token}).json["saved"]
    r = client.post("/s/p/phq9", data={"csrf_token": token, "i1": "9"})  # 9 is not a PHQ-9 option
    assert r.status_code == 422 and "Some answers were not recognised." in r.text
    assert re.search(r'id="i2-1"[^>]*checked', r.text) and not re.search(r'id="i1-\d"[^>]*checked', r.text)
    with ctx.uow() as uow:
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(Response).where(
            Response.status == "submitted")) == 0


def test_an_autosave_needs_this_sessions_csrf_token_in_the_header(ctx, ready, client):
    """The autosave's JSON carries its CSRF token in a header (web.extensions._CSRFProtect reads a
    non-form body's token from the headers only): a missing, forged, foreign or body-only token is
    refused and nothing is saved; the page's own token in X-CSRFToken or X-CSRF-Token is accepted."""
    world, cid, codes, refused, hts = ready
    (sid, code), (_sid2, code2) = list(codes.items())[:2]
    other = client.application.test_client()
    enter(other, code2)
    foreign = csrf(other.get("/s/p/phq9").text)
    assert enter(client, code).status_code == 303
    token = csrf(client.get("/s/p/phq9").text)
    body = {"instrument": "phq9", "item": 1, "value": 2}
    for headers in ({}, {"X-CSRFToken": "forged"}, {"X-CSRFToken": foreign}, {"X-CSRFToken": token[:-2] + "xx"}):
        assert client.post("/s/answer", json=body, headers=headers).status_code == 400, headers
    assert client.post("/s/answer", json=body | {"csrf_token": token}).status_code == 400  # a JSON field is no form
    r = client.post("/s/answer", data='{"instrument": "phq9"}', content_type="text/plain",
                    headers={"X-CSRFToken": "forged"})
    assert r.status_code == 400
    with ctx.uow() as uow:
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(Response).where(
            Response.student_id == sid)) == 0
    assert client.post("/s/answer", json=body, headers={"X-CSRFToken": token}).json == {
        "saved": True, "n": 1, "critical": False}
    assert client.post("/s/answer", json=body | {"item": 2}, headers={"X-CSRF-Token": token}).json["n"] == 2
    # a form post still finds the token in the form (or in a header)
    inst = load_instrument("phq9")
    form = {f"i{it.number}": str(it.options[0].value) for it in inst.items}
    assert client.post("/s/p/phq9", data=form).status_code == 400
    assert client.post("/s/p/phq9", data=form, headers={"X-CSRFToken": token}).status_code == 303


def test_a_refused_paper_file_names_its_rows_with_a_positive_critical_answer(ctx, ready, client):
    """All-or-nothing: a file with an error raises no flag at all, so the page says which rows answer
    a critical item positively, for the counsellor to act on now."""
    import io

    from mh_platform.db.models import Student

    world, cid, codes, refused, hts = ready
    sids = list(codes)
    with ctx.uow() as uow:
        s = uow.session
        num = {sid: ctx.keyring.open_field(s, s.get(Student, sid).student_number_enc, table="student",
                                           column="student_number_enc", row_id=sid) for sid in sids[:2]}
    csv = "学籍号,量表,1,2,3,4,5,6,7,8,9,10\n" + f"{num[sids[0]]},phq9,0,0,0,0,0,0,0,0,2,0\n" + \
        f"{num[sids[1]]},phq9,0,0,0,0,0,0,0,0,7,0\n"  # row 3: 7 is not an option
    login(client, "t.counsellor")
    page = client.get(f"/screening/{cid}/paper")
    for action in ("preview", "commit"):
        r = client.post(f"/screening/{cid}/paper", data={"csrf_token": form_token(page.text), "action": action,
                                                        "file": (io.BytesIO(csv.encode()), "p.csv")},
                        content_type="multipart/form-data")
        alert = re.search(r'id="critical-rows"><p>([^<]+)<', r.text)
        assert alert and alert.group(1).rstrip().endswith("行：2"), action
        assert 'id="row-errors"' in r.text and r.text.count("<tr><td>") == 1  # the one real error


def test_the_new_campaign_form_keeps_what_was_entered_after_an_error(ctx, ready, client):
    """A refused form comes back with the units, grades, name and times as entered (only the error to
    fix); a counsellor with one school has it ticked already."""
    world, cid, codes, refused, hts = ready
    login(client, "t.counsellor")
    page = client.get("/screening/new")
    assert re.search(r'name="unit" value="[0-9a-f-]+" checked', page.text)  # the one school
    r = client.post("/screening/new", data={"csrf_token": form_token(page.text), "name": "秋季普测",
                                            "unit": str(world.school.id), "grade": ["7", "8"],
                                            "opens_at": "2030-09-20T08:00", "closes_at": "2030-09-19T08:00"})
    assert r.status_code == 200 and 'role="alert"' in r.text  # closes before it opens
    assert 'value="秋季普测"' in r.text and 'value="2030-09-20T08:00"' in r.text and 'value="2030-09-19T08:00"' in r.text
    assert set(re.findall(r'name="grade" value="(\d+)" checked', r.text)) == {"7", "8"}
    assert re.search(rf'name="unit" value="{world.school.id}" checked', r.text)
