"""T22 — errors, headers, probes (security.md §5 T22), beyond what test_security.py covers.

* Every GET route with a path parameter, given malformed ids (not a UUID, SQL, path traversal,
  an over-long value, percent-encoded NUL), as a signed-in counsellor and through the API:
  404 (never 500), no stack trace, SQL, driver, file path or Python error text in the body.
* An unexpected exception inside an HTML page (and an SQLAlchemy error carrying its SQL) is a plain
  500 page with the security headers and none of the exception's text.
* Every GET route without parameters, for an anonymous visitor and for a signed-in counsellor:
  the full set of security headers, ``no-store`` on everything but static files.
* Probes: the Werkzeug debugger console, ``.git``, directory listing of /static, traversal out of
  /static, TRACE — all unavailable.
"""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from web_helpers import api_token, bearer, login

from mh_platform.core.types import Role
from mh_platform.web.app import create_app

LEAKS = re.compile(r"Traceback|File \"|sqlalchemy|psycopg|sqlite3?\b|SELECT |INSERT |UPDATE |DELETE FROM|"
                   r"/work/|\.py\b|badly formed|hexadecimal UUID|ValueError|KeyError|Werkzeug Debugger|"
                   r"RuntimeError|OperationalError|TamperedOrMisbound|key_id", re.I)
BAD_IDS = ["not-a-uuid", "1' OR '1'='1", "..%2F..%2Fetc%2Fpasswd", "9" * 300, "%00", "00000000-0000-0000-0000-0000000000001",
           "{}", "-1"]


def _check_headers(r, *, no_store: bool = True) -> None:
    h = r.headers
    csp = h.get("Content-Security-Policy", "")
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp, (r.request.path, csp)
    m = re.search(r"max-age=(\d+)", h.get("Strict-Transport-Security", ""))
    assert m and int(m.group(1)) >= 31536000
    assert h.get("X-Content-Type-Options") == "nosniff"
    assert h.get("Referrer-Policy") == "no-referrer"
    assert "Server" not in h or "werkzeug" not in h["Server"].lower()
    if no_store:
        assert h.get("Cache-Control") == "no-store", (r.request.path, h.get("Cache-Control"))


def _no_leak(r) -> None:
    body = r.get_data(as_text=True)
    m = LEAKS.search(body)
    assert m is None, (r.request.path, r.status_code, m.group(0), body[:300])


def _get_rules(app, *, with_args: bool):
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint == "static":
            continue
        if bool(rule.arguments) == with_args:
            yield rule


@pytest.fixture
def quiet_app(ctx):
    """The app as deployed: unexpected errors become the 500 page (not propagated to the test)."""
    return create_app(ctx=ctx, extra_config={"TESTING": True})


def test_a_view_s_own_header_is_kept_and_the_rest_are_added(ctx):
    """The security headers are defaults: a view that sets one (say a stricter CSP) keeps it; the
    others are still added once each; Cache-Control becomes no-store; Server is dropped."""
    from flask import make_response

    from mh_platform.web.authz import public

    app = create_app(ctx=ctx, extra_config={"TESTING": True})

    @public
    def own():
        resp = make_response("x")
        resp.headers["Content-Security-Policy"] = "default-src 'none'"
        resp.headers["Cache-Control"] = "public, max-age=60"
        resp.headers["Pragma"] = "x"
        resp.headers["Server"] = "Werkzeug/3"
        return resp

    app.add_url_rule("/t/own-headers", "own_headers", own)
    r = app.test_client().get("/t/own-headers")
    assert r.headers.getlist("Content-Security-Policy") == ["default-src 'none'"]
    assert r.headers.getlist("Cache-Control") == ["no-store"] and r.headers.getlist("Pragma") == ["no-cache"]
    assert "Server" not in r.headers
    for name in ("Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy",
                 "Cross-Origin-Opener-Policy", "Permissions-Policy"):
        assert len(r.headers.getlist(name)) == 1, name
    static = app.test_client().get("/static/student.js")
    static.close()
    # static files keep Flask's own caching (revalidate by ETag); only pages are no-store
    assert static.status_code == 200 and static.headers.getlist("Cache-Control") == ["no-cache"]
    assert "frame-ancestors 'none'" in static.headers["Content-Security-Policy"]


def test_malformed_ids_are_404_without_internals(quiet_app, city):
    client = quiet_app.test_client()
    login(client, city.users[Role.COUNSELLOR])
    token = api_token(quiet_app.test_client(), city.users[Role.COUNSELLOR])
    rules = list(_get_rules(quiet_app, with_args=True))
    assert len(rules) >= 8
    checked = 0
    for rule in rules:
        for bad in BAD_IDS:
            path = rule.rule
            for arg in rule.arguments:
                path = path.replace(f"<{arg}>", bad).replace(f"<string:{arg}>", bad)
            headers = bearer(token) if rule.rule.startswith("/api/") else {}
            r = client.get(path, headers=headers)
            assert r.status_code in (404, 400, 302), (path, r.status_code)  # 302: a student-only page sends staff away
            if any(a.endswith("id") for a in rule.arguments) and r.status_code != 302:
                assert r.status_code == 404, (path, r.status_code)
            _no_leak(r)
            _check_headers(r)
            checked += 1
    assert checked >= 8 * len(BAD_IDS)


def test_an_unexpected_error_in_a_page_is_a_plain_500(quiet_app, city, monkeypatch):
    from mh_platform.services import students_read

    def boom(*a, **k):
        raise RuntimeError("SELECT name_enc FROM student WHERE id = 1 -- /work/main/mh_platform/x.py key_id=abc")

    def sql_boom(*a, **k):
        raise sa.exc.OperationalError("SELECT name_enc FROM student WHERE id = ?", ("金丝雀",), Exception("no such table"))

    client = quiet_app.test_client()
    login(client, city.users[Role.COUNSELLOR])
    for fn in (boom, sql_boom):
        monkeypatch.setattr(students_read, "list_students", fn)
        r = client.get("/roster")
        assert r.status_code in (500, 503), r.status_code
        assert "text/html" in r.headers["Content-Type"]
        _no_leak(r)
        assert "金丝雀" not in r.get_data(as_text=True)
        _check_headers(r)


def test_every_parameterless_page_has_the_headers(quiet_app, city):
    rules = [r.rule for r in _get_rules(quiet_app, with_args=False)]
    assert "/login" in rules and len(rules) >= 10
    anon = quiet_app.test_client()
    for path in rules:
        r = anon.get(path)
        assert r.status_code < 500, (path, r.status_code)
        _check_headers(r)
        _no_leak(r)
    staff = quiet_app.test_client()
    login(staff, city.users[Role.COUNSELLOR])
    for path in rules:
        if path in ("/logout",):
            continue
        r = staff.get(path)
        assert r.status_code < 500, (path, r.status_code)
        _check_headers(r)
        _no_leak(r)


def test_probes_find_nothing(quiet_app):
    client = quiet_app.test_client()
    for path in ("/console", "/.git/config", "/.git/HEAD", "/.env", "/static/", "/static/../mh_platform/config.py",
                 "/static/%2e%2e/mh_platform/config.py", "/var/master.key", "/api/v1/../../etc/passwd",
                 "/__debugger__?cmd=resource&f=style.css", "/console?__debugger__=yes&cmd=printpin&s=x"):
        r = client.get(path)
        assert r.status_code in (404, 400, 302, 308), (path, r.status_code)
        body = r.get_data(as_text=True)
        assert "[core]" not in body and "ref: refs/" not in body and "Index of" not in body
        assert "Debugger" not in body and "MHP_" not in body
        if r.status_code != 308:
            _check_headers(r, no_store=not path.startswith("/static"))  # static 404s may be cached publicly
    for method in ("TRACE", "TRACK"):
        r = client.open("/", method=method)
        assert r.status_code in (400, 405, 501), (method, r.status_code)
        assert "TRACE / HTTP" not in r.get_data(as_text=True)
    assert quiet_app.debug is False
