"""CSRF, security headers, login lockout and rate limiting, clear errors for bad form input, TOTP."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pyotp
import pytest
from web_helpers import CSRF_RE, PASSWORD, api_token, bearer, csrf_token, login

from mh_platform.core.types import Role
from mh_platform.web.app import create_app
from mh_platform.web.security import CSP


@pytest.fixture
def counsellor(city):
    return city.users[Role.COUNSELLOR]


# ---- CSRF ---------------------------------------------------------------------------------------------

def test_login_without_csrf_token_is_refused(client, counsellor):
    client.get("/login")
    r = client.post("/login", data={"username": counsellor, "password": PASSWORD})
    assert r.status_code == 400
    assert "表单已过期或无效" in r.get_data(as_text=True)
    assert client.get("/").status_code == 302  # not signed in


def test_logout_and_password_change_need_csrf(client, counsellor):
    login(client, counsellor)
    assert client.post("/logout").status_code == 400
    assert client.post("/logout", data={"csrf_token": "forged"}).status_code == 400
    new = "another horse battery 2"
    r = client.post("/account/password", data={"current": PASSWORD, "new": new, "confirm": new})
    assert r.status_code == 400
    assert client.get("/").status_code == 200  # still signed in: nothing happened


def test_csrf_token_of_another_session_is_refused(app, client, counsellor):
    other = app.test_client()
    foreign = csrf_token(other)
    client.get("/login")
    r = client.post("/login", data={"username": counsellor, "password": PASSWORD, "csrf_token": foreign})
    assert r.status_code == 400


def test_language_switch_needs_csrf(client):
    assert client.post("/lang", data={"lang": "en"}).status_code == 400


def test_student_language_switch_checks_its_csrf_token(client):
    """T14 (scripts/dast.py WAIVED_WAPITI): wapiti called the token of ``POST /s/lang`` unchecked because
    it replayed a form whose token an emptied student session no longer matched (both answers 400).
    The token is checked: none, a made-up one and a stale one are refused; the page's own is accepted."""
    assert client.post("/s/lang", data={"lang": "en"}).status_code == 400
    assert client.post("/s/lang", data={"lang": "en", "csrf_token": "wapiti"}).status_code == 400
    stale = csrf_token(client, "/s/")
    # a refused code empties the student session, its CSRF token included (shared PCs)
    r = client.post("/s/", data={"code": "WRONGCODE", "csrf_token": stale})
    assert r.status_code == 403
    fresh = CSRF_RE.search(r.get_data(as_text=True)).group(1)
    assert stale != fresh
    assert client.post("/s/lang", data={"lang": "en", "csrf_token": stale}).status_code == 400
    assert client.post("/lang", data={"lang": "en", "csrf_token": stale}).status_code == 400  # one session for both
    assert client.post("/s/lang", data={"lang": "en", "csrf_token": fresh}).status_code == 303
    assert client.post("/lang", data={"lang": "zh_CN", "csrf_token": fresh}).status_code in (302, 303)


# ---- headers -----------------------------------------------------------------------------------------

def _check_headers(r, *, no_store: bool = True) -> None:
    h = r.headers
    assert h["Content-Security-Policy"] == CSP
    assert "default-src 'self'" in CSP and "frame-ancestors 'none'" in CSP
    assert "unsafe-inline" not in CSP and "unsafe-eval" not in CSP
    assert h["Strict-Transport-Security"].startswith("max-age=31536000")
    assert h["X-Content-Type-Options"] == "nosniff"
    assert h["Referrer-Policy"] == "no-referrer"
    assert h["X-Frame-Options"] == "DENY"
    if no_store:
        assert h["Cache-Control"] == "no-store"


def test_security_headers_on_every_kind_of_response(client, counsellor):
    _check_headers(client.get("/login"))
    _check_headers(client.get("/"))  # redirect
    _check_headers(client.get("/no/such/page"))
    _check_headers(client.get("/api/v1/me"))  # 401 JSON
    _check_headers(client.get("/api/v1/openapi.json"))
    with client.get("/static/css/app.css") as static:
        _check_headers(static, no_store=False)
    login(client, counsellor)
    _check_headers(client.get("/"))
    _check_headers(client.get("/roster"))
    token = api_token(client, counsellor)
    _check_headers(client.get("/api/v1/students", headers=bearer(token)))
    _check_headers(client.get("/api/v1/nothing-here", headers=bearer(token)))


def test_pages_have_no_inline_script_or_style(client, counsellor):
    import re

    def check(html: str) -> None:
        assert "<script" not in html
        assert "<style" not in html and not re.search(r"\sstyle=", html) and not re.search(r"\son[a-z]+=", html)
        assert "http://" not in html and "https://" not in html  # nothing from a CDN

    check(client.get("/login").get_data(as_text=True))
    login(client, counsellor)
    for path in ("/", "/roster", "/account/password"):
        r = client.get(path)
        assert r.status_code == 200
        check(r.get_data(as_text=True))


# ---- lockout, rate limit -----------------------------------------------------------------------------

def test_login_lockout_and_identical_messages(ctx, client, counsellor):
    unknown = login(client, "no.such.user", "wrong horse battery")
    assert unknown.status_code == 401
    msg = "用户名或密码错误，或账户已被暂时锁定。"
    assert msg in unknown.get_data(as_text=True)
    for _ in range(ctx.settings.login_max_attempts):
        r = login(client, counsellor, "wrong horse battery")
        assert r.status_code == 401 and msg in r.get_data(as_text=True)
    locked = login(client, counsellor, PASSWORD)  # the right password, but locked now
    assert locked.status_code == 401 and msg in locked.get_data(as_text=True)
    assert client.get("/").status_code == 302
    r = client.post("/api/v1/auth/token", json={"username": counsellor, "password": PASSWORD})
    assert r.status_code == 401
    ctx.clock.advance(minutes=ctx.settings.login_lockout_minutes + 1)
    assert login(client, counsellor, PASSWORD).status_code == 302
    assert client.get("/").status_code == 200


def test_login_rate_limits_per_account_and_per_address(ctx, city):
    app = create_app(ctx=ctx, extra_config={"TESTING": True, "MHP_LOGIN_RATE_LIMIT": "3 per minute",
                                            "MHP_LOGIN_IP_RATE_LIMIT": "6 per minute"})
    c = app.test_client()
    codes = [login(c, "no.such.user", "wrong horse battery").status_code for _ in range(4)]
    assert codes == [401, 401, 401, 429]
    assert "尝试过于频繁" in login(c, "no.such.user", "x").get_data(as_text=True)
    # other accounts from the same address are not blocked by the first one's limit, until the
    # per-address limit (6, three of which are spent) runs out
    codes = [login(c, f"user{i}", "wrong horse battery").status_code for i in range(4)]
    assert codes == [401, 401, 401, 429]
    codes = [c.post("/api/v1/auth/token", json={"username": "x", "password": "y"}).status_code for _ in range(4)]
    assert codes[-1] == 429


# ---- bad input ---------------------------------------------------------------------------------------

def test_empty_login_form_gives_clear_errors(client):
    token = csrf_token(client)
    r = client.post("/login", data={"username": "", "password": "", "csrf_token": token})
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert "请输入用户名" in html and "请输入密码" in html
    assert 'aria-invalid="true"' in html


@pytest.mark.parametrize(("form", "message"), [
    ({"current": PASSWORD, "new": "short", "confirm": "short"}, "新密码长度须为10到200个字符"),
    ({"current": PASSWORD, "new": "another horse 2", "confirm": "another horse 3"}, "两次输入的新密码不一致"),
    ({"current": "wrong horse battery", "new": "another horse 2", "confirm": "another horse 2"}, "当前密码不正确"),
    ({"current": PASSWORD, "new": PASSWORD, "confirm": PASSWORD}, "新密码不能与当前密码相同"),
    ({"current": PASSWORD, "new": "password123", "confirm": "password123"}, "密码过于常见或容易被猜到"),
    ({"current": PASSWORD, "new": "t.counsellor 2026!", "confirm": "t.counsellor 2026!"}, "密码不能包含您的用户名"),
    ({"current": "", "new": "", "confirm": ""}, "请输入当前密码"),
])
def test_bad_password_change_gives_clear_errors(client, counsellor, form, message):
    login(client, counsellor)
    r = client.post("/account/password", data={**form, "csrf_token": csrf_token(client, "/account/password")})
    assert r.status_code == 422
    assert message in r.get_data(as_text=True)
    assert client.get("/").status_code == 200  # still signed in with the old password


@pytest.mark.parametrize(("body", "field"), [
    ({"username": "x"}, "password"),
    ({"password": "x"}, "username"),
    ({"username": "", "password": "x"}, "username"),
    ({"username": "x", "password": "y", "extra": 1}, "extra"),
])
def test_bad_token_request_gives_field_errors(client, body, field):
    r = client.post("/api/v1/auth/token", json=body)
    assert r.status_code == 422
    assert field in {e["field"] for e in r.get_json()["errors"]}


def test_non_json_token_request(client):
    r = client.post("/api/v1/auth/token", data="username=x", content_type="application/x-www-form-urlencoded")
    assert r.status_code == 422 and r.get_json()["errors"][0]["field"] == "_body"


def test_unexpected_errors_show_no_internals(ctx, city, monkeypatch):
    from mh_platform.services import students_read

    def boom(*a, **k):
        raise RuntimeError("SELECT secret FROM student /work/main/x.py")

    monkeypatch.setattr(students_read, "list_students", boom)
    app = create_app(ctx=ctx, extra_config={"TESTING": True})
    c = app.test_client()
    token = api_token(c, city.users[Role.COUNSELLOR])
    r = c.get("/api/v1/students", headers=bearer(token))
    assert r.status_code == 500 and r.get_json() == {"error": "internal_error", "message": "internal error"}


# ---- TOTP --------------------------------------------------------------------------------------------

@pytest.fixture
def totp_client(ctx, city):
    ctx.settings = replace(ctx.settings, totp_roles=("counsellor",))
    return create_app(ctx=ctx, extra_config={"TESTING": True, "MHP_PROPAGATE_ERRORS": True}).test_client()


def _code_form(client, code: str):
    html = client.get("/login/totp").get_data(as_text=True)
    return client.post("/login/totp", data={"code": code, "csrf_token": CSRF_RE.search(html).group(1)})


def test_totp_enrolment_then_login(ctx, totp_client, counsellor):
    import re

    c = totp_client
    r = login(c, counsellor)
    assert r.headers["Location"] == "/login/totp"
    assert c.get("/").status_code == 302  # the password alone does not sign in
    html = c.get("/login/totp").get_data(as_text=True)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', html).group(1)
    assert "otpauth://totp/" in html
    assert _code_form(c, "000000" if pyotp.TOTP(secret).at(ctx.now()) != "000000" else "111111").status_code == 401
    assert _code_form(c, "12ab").status_code == 422
    r = _code_form(c, pyotp.TOTP(secret).at(ctx.now()))
    assert r.status_code == 302 and r.headers["Location"] == "/"
    assert c.get("/").status_code == 200
    # the secret is stored sealed, not in plaintext
    from mh_platform.db.models import User

    with ctx.uow() as uow:
        import sqlalchemy as sa

        u = uow.session.scalar(sa.select(User).where(User.username == counsellor))
        assert u.totp_secret_enc is not None and secret.encode() not in u.totp_secret_enc
    # next login: the enrolled secret is asked for, not shown again
    c.post("/logout", data={"csrf_token": csrf_token(c, "/")})
    login(c, counsellor)
    html = c.get("/login/totp").get_data(as_text=True)
    assert "totp-secret" not in html
    ctx.clock.advance(minutes=2)
    assert _code_form(c, pyotp.TOTP(secret).at(ctx.now())).status_code == 302
    assert c.get("/").status_code == 200


def test_totp_code_works_only_once(ctx, totp_client, counsellor):
    """RFC 6238 §5.2: an accepted code (even one seen over a shoulder) cannot be replayed in its window."""
    import re

    c = totp_client
    login(c, counsellor)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', c.get("/login/totp").get_data(as_text=True)).group(1)
    code = pyotp.TOTP(secret).at(ctx.now())
    assert _code_form(c, code).status_code == 302  # enrolment uses it
    c.post("/logout", data={"csrf_token": csrf_token(c, "/")})
    ctx.clock.advance(seconds=10)  # same 30 s step (or the next, still inside the window)
    login(c, counsellor)
    assert _code_form(c, code).status_code == 401
    ctx.clock.advance(seconds=60)
    assert _code_form(c, pyotp.TOTP(secret).at(ctx.now())).status_code == 302


def test_totp_pending_login_expires(ctx, totp_client, counsellor):
    login(totp_client, counsellor)
    ctx.clock.advance(minutes=6)
    r = totp_client.get("/login/totp")
    assert r.status_code == 302 and r.headers["Location"] == "/login"


def test_totp_not_asked_of_other_roles(totp_client, city):
    assert login(totp_client, city.users[Role.HEAD_TEACHER]).headers["Location"] == "/"


def test_api_token_for_a_second_factor_role_needs_the_code(ctx, totp_client, counsellor):
    import re

    c = totp_client
    r = c.post("/api/v1/auth/token", json={"username": counsellor, "password": PASSWORD})
    assert r.status_code == 401 and r.get_json()["error"] == "totp_not_enrolled"
    login(c, counsellor)  # enrol on the web
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', c.get("/login/totp").get_data(as_text=True)).group(1)
    assert _code_form(c, pyotp.TOTP(secret).at(ctx.now())).status_code == 302
    ctx.clock.advance(seconds=30)  # the enrolment code was used once; the next step gives a new one
    r = c.post("/api/v1/auth/token", json={"username": counsellor, "password": PASSWORD})
    assert r.status_code == 401 and r.get_json()["error"] == "totp_required"
    wrong = "000000" if pyotp.TOTP(secret).at(ctx.now()) != "000000" else "111111"
    r = c.post("/api/v1/auth/token", json={"username": counsellor, "password": PASSWORD, "totp": wrong})
    assert r.status_code == 401 and r.get_json()["error"] == "invalid_credentials"
    r = c.post("/api/v1/auth/token", json={"username": counsellor, "password": PASSWORD,
                                           "totp": pyotp.TOTP(secret).at(ctx.now())})
    assert r.status_code == 200 and r.get_json()["token"]
    assert c.get("/").status_code == 200  # the web session survives the token request


def test_wrong_second_factor_codes_lock_the_account_however_often_the_password_is_right(ctx, totp_client, counsellor):
    """ASVS 6.3.1 / T12: a correct password before each guess must not reset the count of wrong
    codes, or the second factor could be guessed without ever locking. A correct code clears it."""
    import re

    import sqlalchemy as sa

    from mh_platform.db.models import User

    c = totp_client
    login(c, counsellor)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', c.get("/login/totp").get_data(as_text=True)).group(1)
    assert _code_form(c, pyotp.TOTP(secret).at(ctx.now())).status_code == 302  # enrolled
    c.post("/logout", data={"csrf_token": csrf_token(c, "/")})
    t = pyotp.TOTP(secret)

    def wrong() -> str:
        valid = {t.at(ctx.now() + timedelta(seconds=30 * k)) for k in (-1, 0, 1)}
        return next(f"{i:06d}" for i in range(10 ** 6) if f"{i:06d}" not in valid)

    def failures() -> tuple[int, bool]:
        with ctx.uow() as uow:
            u = uow.session.scalar(sa.select(User).where(User.username == counsellor))
            return u.failed_logins, u.locked_until is not None and u.locked_until > ctx.now()

    n = ctx.settings.login_max_attempts
    for _ in range(n - 1):  # password right, code wrong, again and again (a new login each time)
        assert login(c, counsellor).headers["Location"] == "/login/totp"
        assert _code_form(c, wrong()).status_code == 401
    assert failures() == (n - 1, False)
    ctx.clock.advance(minutes=1)
    assert login(c, counsellor).headers["Location"] == "/login/totp"
    assert _code_form(c, t.at(ctx.now())).status_code == 302  # a right code clears the count
    assert failures() == (0, False)
    c.post("/logout", data={"csrf_token": csrf_token(c, "/")})
    from mh_platform.services import totp

    for _ in range(n):  # the token path (password and code in one request), not rate-limited per minute here
        assert totp.issue_api_token(ctx, counsellor, PASSWORD, wrong()).token is None
    assert failures()[1]  # locked
    ctx.clock.advance(minutes=1)
    assert totp.issue_api_token(ctx, counsellor, PASSWORD, t.at(ctx.now())).token is None  # right ones refused too
    assert login(c, counsellor).headers.get("Location") != "/login/totp"


def test_the_password_alone_neither_signs_in_nor_ends_a_live_session(ctx, totp_client, counsellor):
    """For a second-factor role the password step only starts a pending login: someone who knows the
    password but not the code can neither get in nor sign the real user out again and again. The
    code then starts the one session (the earlier one ends, as at every login)."""
    import re

    c = totp_client
    login(c, counsellor)
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', c.get("/login/totp").get_data(as_text=True)).group(1)
    assert _code_form(c, pyotp.TOTP(secret).at(ctx.now())).status_code == 302
    assert c.get("/").status_code == 200  # the real user is signed in
    other = c.application.test_client()
    for _ in range(3):  # the password, again and again, without the code
        assert login(other, counsellor).headers["Location"] == "/login/totp"
        assert other.get("/").status_code == 302
        assert c.get("/").status_code == 200  # still signed in
    ctx.clock.advance(minutes=1)
    assert _code_form(other, pyotp.TOTP(secret).at(ctx.now())).status_code == 302  # the code: signed in
    assert other.get("/").status_code == 200
    assert c.get("/").status_code == 302  # one session per user: the earlier one ended


def test_database_down_is_a_503_without_internals(fresh_ctx):
    from mh_platform.db.engine import make_engine, make_sessionmaker

    app = create_app(ctx=fresh_ctx, extra_config={"TESTING": True})
    dead = make_engine("postgresql://postgres@127.0.0.1:9/nowhere", pool_pre_ping=False,
                       connect_args={"connect_timeout": 2})
    fresh_ctx.sessions = make_sessionmaker(dead)
    c = app.test_client()
    r = c.post("/api/v1/auth/token", json={"username": "someone", "password": "something long"})
    assert r.status_code == 503 and int(r.headers["Retry-After"]) > 0
    assert r.get_json() == {"error": "unavailable", "message": "the service is temporarily unavailable"}
    r = c.get("/", headers={"Cookie": "mhp_session=x"})
    assert r.status_code in (302, 503)
    html = c.get("/login").get_data(as_text=True)
    assert "Traceback" not in html and "nowhere" not in html
    dead.dispose()
