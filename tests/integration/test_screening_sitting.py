"""The student sitting ends server-side (security tests T13/T21, WSTG-SESS-06).

The ``mhp_student`` cookie carries the access-code row id and the sitting's random token; the code
row keeps only the token's digest. A cookie copied before "leave for now", before the battery was
finished, before the code was entered again on another computer, before the slips were reprinted or
consent withdrawn, or before the window closed, reads and writes nothing afterwards — it behaves like
no cookie (code entry; the autosave's 401 ``signed_out``). Entering the code again still resumes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid

import pytest
import sqlalchemy as sa
from itsdangerous import URLSafeTimedSerializer
from screening_world import app, quick_argon2, ready  # noqa: F401 - fixtures

from mh_platform.core.instruments import load_instrument
from mh_platform.db.models import AccessCode, Response
from mh_platform.services import campaigns, consent, responses
from mh_platform.web.blueprints.student import cookie_value


def csrf(html: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def enter(client, code: str):
    page = client.get("/s/", follow_redirects=True)  # a stale cookie: /s/resume drops it, back to /s/
    return client.post("/s/", data={"code": code, "csrf_token": csrf(page.text)})


def save(client, token: str, item: int, value, instrument: str = "phq9"):
    return client.post("/s/answer", json={"instrument": instrument, "item": item, "value": value},
                       headers={"X-CSRFToken": token})


def stored(ctx, sid, instrument: str = "phq9") -> dict | None:
    """The page's saved answers as the database holds them (None: no row yet)."""
    with ctx.uow() as uow:
        s = uow.session
        r = s.scalar(sa.select(Response).where(Response.student_id == sid, Response.instrument_id == instrument))
        if r is None:
            return None
        return {"status": r.status, "answers": json.loads(ctx.keyring.open_field(
            s, r.answers_enc, table="response", column="answers_enc", row_id=r.id))}


def sitting_hash(ctx, sid) -> bytes | None:
    with ctx.uow() as uow:
        return uow.session.scalar(sa.select(AccessCode.sitting_hash).where(AccessCode.student_id == sid))


def replay(app, captured: str):
    """Another browser (a proxy log, the next student on the PC) with the copied cookie."""
    other = app.test_client()
    other.set_cookie("mhp_student", captured, path="/s")
    return other


def assert_signed_out(ctx, app, captured: str, sid, *, item9_value: int | None = None) -> None:
    """The copied cookie opens no page, no resume, writes no answer and submits no page — exactly
    like a request without any cookie — and the database is unchanged."""
    before = stored(ctx, sid)
    bare = app.test_client()  # no cookie at all: what the copy must look like
    bare_token = csrf(bare.get("/s/").text)
    other = replay(app, captured)
    page = other.get("/s/p/phq9")
    assert page.status_code == 302 and page.headers["Location"].endswith("/s/"), page.status_code
    assert bare.get("/s/p/phq9").status_code == 302
    if item9_value is not None:
        assert not re.search(rf'id="i9-{item9_value}"[^>]*checked', page.text)
    r = replay(app, captured).get("/s/resume")
    assert r.status_code == 302 and r.headers["Location"].endswith("/s/")
    # the autosave answers exactly as for a missing cookie, and writes nothing
    other = app.test_client()
    token = csrf(other.get("/s/").text)
    other.set_cookie("mhp_student", captured, path="/s")
    r = save(other, token, 1, 3)
    missing = save(bare, bare_token, 1, 3)
    assert (r.status_code, r.json) == (missing.status_code, missing.json) == (401, {"saved": False,
                                                                                     "error": "signed_out"})
    # a whole-page post is refused too (back to code entry), nothing submitted
    other.set_cookie("mhp_student", captured, path="/s")
    inst = load_instrument("phq9")
    r = other.post("/s/p/phq9", data={"csrf_token": token} | {f"i{it.number}": "0" for it in inst.items})
    assert r.status_code == 302 and r.headers["Location"].endswith("/s/")
    assert stored(ctx, sid) == before


def test_a_cookie_copied_before_pause_reads_and_writes_nothing_after_pause(ctx, ready, app):
    world, cid, codes, refused, hts = ready
    sid, code = next(iter(codes.items()))
    client = app.test_client()
    enter(client, code)
    captured = client.get_cookie("mhp_student", path="/s").value
    token = csrf(client.get("/s/p/phq9").text)
    assert save(client, token, 9, 3).json["saved"]
    # before the pause the copy works (the control: the replay below could have read item 9)
    page = replay(app, captured).get("/s/p/phq9")
    assert page.status_code == 200 and re.search(r'id="i9-3"[^>]*checked', page.text)
    client.post("/s/pause", data={"csrf_token": token})  # the student leaves the PC
    assert sitting_hash(ctx, sid) is None
    assert_signed_out(ctx, app, captured, sid, item9_value=3)
    assert stored(ctx, sid) == {"status": "in_progress", "answers": {"9": 3}}


def test_pause_then_entering_the_code_again_resumes_with_a_new_sitting(ctx, ready, app):
    world, cid, codes, refused, hts = ready
    sid, code = list(codes.items())[1]
    client = app.test_client()
    enter(client, code)
    first = client.get_cookie("mhp_student", path="/s").value
    token = csrf(client.get("/s/p/phq9").text)
    assert save(client, token, 2, 1).json["saved"]
    client.post("/s/pause", data={"csrf_token": token})
    r = enter(client, code)
    second = client.get_cookie("mhp_student", path="/s").value
    assert second != first
    page = client.get(r.headers["Location"])
    assert page.status_code == 200 and re.search(r'id="i2-1"[^>]*checked', page.text)
    assert save(client, csrf(page.text), 3, 2).json["saved"]
    assert stored(ctx, sid)["answers"] == {"2": 1, "3": 2}
    assert_signed_out(ctx, app, first, sid)


def test_a_closed_tab_resumes_with_the_same_cookie(ctx, ready, app):
    world, cid, codes, refused, hts = ready
    sid, code = list(codes.items())[2]
    client = app.test_client()
    enter(client, code)
    token = csrf(client.get("/s/p/phq9").text)
    assert save(client, token, 4, 2).json["saved"]
    # the tab is closed and the browser comes back to /s/ within the 2 hours: the sitting still holds
    r = client.get("/s/")
    assert r.status_code == 302 and r.headers["Location"].endswith("/s/resume")
    r = client.get("/s/resume")
    assert r.headers["Location"].endswith("/s/p/phq9")
    assert re.search(r'id="i4-2"[^>]*checked', client.get("/s/p/phq9").text)


def test_entering_the_code_on_another_computer_ends_the_first_computers_sitting(ctx, ready, app):
    world, cid, codes, refused, hts = ready
    sid, code = next(iter(codes.items()))
    a = app.test_client()
    enter(a, code)
    a_cookie = a.get_cookie("mhp_student", path="/s").value
    a_token = csrf(a.get("/s/p/phq9").text)
    assert save(a, a_token, 1, 1).json["saved"]
    b = app.test_client()
    r = enter(b, code)
    page = b.get(r.headers["Location"])
    assert re.search(r'id="i1-1"[^>]*checked', page.text)  # resumed on the second computer
    # the first computer (or anyone holding its cookie) is signed out: its autosave is refused, unwritten
    r = save(a, a_token, 2, 3)
    assert (r.status_code, r.json) == (401, {"saved": False, "error": "signed_out"})
    assert a.get("/s/p/phq9").status_code == 302
    assert_signed_out(ctx, app, a_cookie, sid)
    assert save(b, csrf(page.text), 2, 2).json["saved"]
    assert stored(ctx, sid)["answers"] == {"1": 1, "2": 2}


def test_a_cookie_copied_before_finishing_opens_nothing_after_done(ctx, ready, app):
    world, cid, codes, refused, hts = ready
    sid, code = list(codes.items())[1]
    client = app.test_client()
    enter(client, code)
    captured = client.get_cookie("mhp_student", path="/s").value
    for iid in ("phq9", "gad7", "asq", "k10", "who5"):
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
    # the sitting that finished still gets its thank-you page (and only that) ...
    assert "已完成" in replay(app, captured).get("/s/done").text
    assert "已完成" in client.get("/s/done").text
    # ... and opens no page: back to code entry, as without a cookie (not even the "completed" notice)
    other = replay(app, captured)
    r = other.get("/s/p/phq9")
    assert r.status_code == 302 and r.headers["Location"].endswith("/s/")
    r = replay(app, captured).get("/s/resume")
    assert r.status_code == 302 and r.headers["Location"].endswith("/s/")
    other = app.test_client()
    token = csrf(other.get("/s/").text)
    other.set_cookie("mhp_student", captured, path="/s")
    r = save(other, token, 1, 3)
    assert (r.status_code, r.json) == (401, {"saved": False, "error": "signed_out"})
    with pytest.raises(responses.SittingEnded):
        responses.page(ctx, _sitting_of(app, captured), "phq9")


def _sitting_of(app, cookie: str) -> responses.Sitting:
    data = URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="mhp-student-session").loads(cookie)
    t = data["t"]
    return responses.Sitting(uuid.UUID(data["c"]), base64.urlsafe_b64decode(t + "=" * (-len(t) % 4)))


def test_reprinting_the_slips_and_withdrawing_consent_end_the_sitting(ctx, ready, app):
    world, cid, codes, refused, hts = ready
    (sid1, code1), (sid2, code2) = list(codes.items())[:2]
    c1, c2 = app.test_client(), app.test_client()
    enter(c1, code1)
    enter(c2, code2)
    k1 = c1.get_cookie("mhp_student", path="/s").value
    k2 = c2.get_cookie("mhp_student", path="/s").value
    assert save(c1, csrf(c1.get("/s/p/phq9").text), 1, 2).json["saved"]
    again = campaigns.issue_codes_system(ctx, cid)  # reprint: new codes for the unfinished
    assert sitting_hash(ctx, sid1) is None
    assert_signed_out(ctx, app, k1, sid1)
    r = enter(c1, again[sid1])  # the new slip resumes
    assert re.search(r'id="i1-2"[^>]*checked', c1.get(r.headers["Location"]).text)
    # withdrawal: the new sitting of student 2 ends with the revoked code
    enter(c2, again[sid2])
    k2 = c2.get_cookie("mhp_student", path="/s").value
    consent.withdraw(ctx, hts[0], sid2)
    assert sitting_hash(ctx, sid2) is None
    assert_signed_out(ctx, app, k2, sid2)


def test_closing_the_window_ends_every_sitting(ctx, ready, app):
    world, cid, codes, refused, hts = ready
    sid, code = next(iter(codes.items()))
    sess = responses.begin(ctx, code)
    assert sitting_hash(ctx, sid) is not None
    ctx.clock.advance(days=4)
    assert str(cid) in campaigns.close_due(ctx)["closed"]
    assert sitting_hash(ctx, sid) is None
    with pytest.raises(responses.SittingEnded):
        responses.load(ctx, sess.sitting)


def test_the_code_row_keeps_only_a_digest_and_a_forged_or_stale_token_changes_nothing(ctx, ready, app):
    world, cid, codes, refused, hts = ready
    sid, code = next(iter(codes.items()))
    old = responses.begin(ctx, code).sitting
    cur = responses.begin(ctx, code).sitting
    assert old.access_code_id == cur.access_code_id and old.token != cur.token and len(cur.token) == 16
    stored_hash = sitting_hash(ctx, sid)
    assert stored_hash == hashlib.sha256(b"mhp-sitting\0" + cur.token).digest() and cur.token not in stored_hash
    # a cookie signed with the server's secret but with a guessed token, and the previous sitting: refused
    for bad in (responses.Sitting(cur.access_code_id, bytes(16)), old):
        client = app.test_client()
        token = csrf(client.get("/s/").text)
        client.set_cookie("mhp_student", cookie_value(app.config["SECRET_KEY"], bad), path="/s")
        r = save(client, token, 1, 1)
        assert (r.status_code, r.json) == (401, {"saved": False, "error": "signed_out"})
        with pytest.raises(responses.SittingEnded):
            responses.save_answer(ctx, bad, "phq9", 1, 1)
        assert responses.pause(ctx, bad) is False  # a stale cookie cannot end the current sitting
    assert stored(ctx, sid) is None
    assert sitting_hash(ctx, sid) == stored_hash
    assert responses.save_answer(ctx, cur, "phq9", 1, 1).n_answered == 1
    assert responses.pause(ctx, cur) is True and sitting_hash(ctx, sid) is None
    with pytest.raises(responses.SittingEnded):
        responses.save_answer(ctx, cur, "phq9", 2, 1)
    assert stored(ctx, sid)["answers"] == {"1": 1}
