"""Session lifecycle: a cookie replayed after logout, password change, disable or role change is
refused; idle timeout; a fresh session at login; bearer tokens die when revoked, expired or
when the password changes."""

from __future__ import annotations

import pytest
from web_helpers import PASSWORD, api_token, bearer, csrf_token, login, session_cookie

from mh_platform.core.types import Role
from mh_platform.services import auth
from mh_platform.services.context import SYSTEM


def _signed_in(client) -> bool:
    r = client.get("/")
    return r.status_code == 200


def _replay(client, cookie: str) -> None:
    client.set_cookie("mhp_session", cookie)


def _refused(client) -> None:
    r = client.get("/")
    assert r.status_code == 302
    assert r.headers["Location"].startswith("/login")


@pytest.fixture
def counsellor(city):
    return city.users[Role.COUNSELLOR]


def test_login_gives_a_fresh_session_without_the_user_id(ctx, client, city, counsellor):
    client.get("/login")
    before = session_cookie(client)
    r = login(client, counsellor)
    assert r.status_code == 302 and r.headers["Location"] == "/"
    after = session_cookie(client)
    assert after and after != before
    assert _signed_in(client)
    # the cookie's identity is the rotating session token, never the user id
    with client.session_transaction() as sess:
        assert sess["_user_id"] != str(city.user_ids[Role.COUNSELLOR])
        token = sess["_user_id"]
    assert auth.actor_from_session_token(ctx, token).username == counsellor
    # the database keeps only the token's SHA-256: a copy of it hands out no live session
    import hashlib

    import sqlalchemy as sa

    from mh_platform.db.models import User

    with ctx.uow() as uow:
        stored = uow.session.scalar(sa.select(User.session_token).where(User.username == counsellor))
    assert stored == hashlib.sha256(token.encode()).hexdigest() and stored != token
    assert auth.actor_from_session_token(ctx, stored) is None
    # logging in again issues a new token: the earlier session is gone
    other = client.application.test_client()
    login(other, counsellor)
    _refused(client)


def test_cookie_replayed_after_logout_is_refused(client, counsellor):
    login(client, counsellor)
    cookie = session_cookie(client)
    r = client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert r.status_code == 302
    assert "Clear-Site-Data" in r.headers
    _refused(client)
    _replay(client, cookie)
    _refused(client)


def test_cookie_replayed_after_password_change_is_refused(client, counsellor):
    login(client, counsellor)
    cookie = session_cookie(client)
    new = "another horse battery 2"
    r = client.post("/account/password", data={"current": PASSWORD, "new": new, "confirm": new,
                                               "csrf_token": csrf_token(client, "/account/password")})
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    _replay(client, cookie)
    _refused(client)
    assert login(client, counsellor, PASSWORD).status_code == 401
    assert login(client, counsellor, new).status_code == 302


def test_cookie_replayed_after_account_disable_is_refused(ctx, client, city, counsellor):
    login(client, counsellor)
    cookie = session_cookie(client)
    assert _signed_in(client)
    auth.set_active(ctx, SYSTEM, city.user_ids[Role.COUNSELLOR], False)
    _replay(client, cookie)
    _refused(client)
    assert login(client, counsellor).status_code == 401


def test_cookie_replayed_after_role_change_is_refused(ctx, client, city, counsellor):
    login(client, counsellor)
    cookie = session_cookie(client)
    auth.change_role(ctx, SYSTEM, city.user_ids[Role.COUNSELLOR], Role.HEAD_TEACHER, unit_id=city.home_class.id)
    _replay(client, cookie)
    _refused(client)
    login(client, counsellor)
    assert "班主任" in client.get("/").get_data(as_text=True)


def test_idle_timeout_ends_the_session(ctx, client, counsellor):
    login(client, counsellor)
    ctx.clock.advance(minutes=ctx.settings.session_minutes - 1)
    assert _signed_in(client)  # activity moves the idle deadline
    ctx.clock.advance(minutes=ctx.settings.session_minutes - 1)
    assert _signed_in(client)
    ctx.clock.advance(minutes=ctx.settings.session_minutes + 1)
    _refused(client)
    assert "会话已超时" in client.get("/login").get_data(as_text=True)


def test_the_student_area_neither_reads_nor_extends_a_staff_session(ctx, client, counsellor):
    """/s/ authenticates by access code only (app.CODE_AUTHENTICATED_BLUEPRINTS): on a shared PC a
    staff session left open is not used there, and visiting student pages does not keep it alive."""
    login(client, counsellor)
    ctx.clock.advance(minutes=ctx.settings.session_minutes - 1)
    for _ in range(3):
        r = client.get("/s/")
        assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
        assert ctx.settings.help_hotline in r.get_data(as_text=True)
        assert counsellor not in r.get_data(as_text=True)  # no staff name in the student page
    ctx.clock.advance(minutes=2)  # idle since the last staff page, whatever the student pages did
    _refused(client)


def test_a_view_in_the_student_area_that_is_not_public_still_needs_a_login(ctx, city):
    """Default-deny is kept in the code-authenticated area: only its @public views skip the login."""
    from mh_platform.web.app import create_app

    app = create_app(ctx=ctx, extra_config={"TESTING": True})
    app.add_url_rule("/s/not-public", "student.not_public", lambda: "secret")
    r = app.test_client().get("/s/not-public")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")


def test_absolute_lifetime_ends_an_active_session(ctx, client, counsellor):
    from datetime import timedelta

    login(client, counsellor)
    start = ctx.now()
    step = ctx.settings.session_minutes - 5
    for _ in range(12 * 60 // step + 1):
        ctx.clock.advance(minutes=step)
        if not _signed_in(client):
            break
    else:
        pytest.fail("an active session outlived the absolute lifetime")
    assert timedelta(hours=12) < ctx.now() - start <= timedelta(hours=12, minutes=step)


def test_cookie_attributes(client, counsellor):
    r = login(client, counsellor)
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # cookie_secure is off in tests


def test_secure_cookie_when_configured(ctx, city):
    from dataclasses import replace

    from web_helpers import CSRF_RE

    from mh_platform.web.app import create_app

    ctx.settings = replace(ctx.settings, cookie_secure=True)
    app = create_app(ctx=ctx, extra_config={"TESTING": True})
    c = app.test_client()
    html = c.get("/login", base_url="https://localhost").get_data(as_text=True)
    token = CSRF_RE.search(html).group(1)
    r = c.post("/login", base_url="https://localhost",
               headers={"Referer": "https://localhost/login"},
               data={"username": city.users[Role.COUNSELLOR], "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 302
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("__Host-mhp_session=") and "Secure" in cookie and "HttpOnly" in cookie


# ---- bearer tokens -----------------------------------------------------------------------------------

def test_bearer_token_works_until_revoked(client, counsellor):
    token = api_token(client, counsellor)
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    r = client.post("/api/v1/auth/revoke", headers=bearer(token))
    assert r.status_code == 200 and r.get_json() == {"revoked": True}
    r = client.get("/api/v1/me", headers=bearer(token))
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_bearer_token_expires(ctx, client, counsellor):
    r = client.post("/api/v1/auth/token", json={"username": counsellor, "password": PASSWORD})
    body = r.get_json()
    token = body["token"]
    assert body["expires_at"].startswith("2026-09-14T08:30")  # FixedClock + api_token_minutes (30)
    ctx.clock.advance(minutes=ctx.settings.api_token_minutes - 1)
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    ctx.clock.advance(minutes=2)
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401


def test_bearer_token_dies_with_password_change_and_disable(ctx, client, city, counsellor):
    token = api_token(client, counsellor)
    auth.change_password(ctx, auth.actor_from_api_token(ctx, token), PASSWORD, "another horse battery 2")
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401
    token = api_token(client, counsellor, "another horse battery 2")
    auth.set_active(ctx, SYSTEM, city.user_ids[Role.COUNSELLOR], False)
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 401


def _arg_value(rule, arg: str) -> str:  # noqa: ANN001
    """An id is a UUID; an ``<any(a, b):name>`` argument (a fixed set of words) its first word."""
    items = getattr(rule._converters.get(arg), "items", None)  # werkzeug's AnyConverter
    return sorted(items)[0] if items else "00000000-0000-4000-8000-000000000000"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer not-a-token"])
def test_every_api_route_needs_a_valid_token(client, app, city, header):
    headers = {"Authorization": header} if header is not None else {}
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1") or rule.rule in ("/api/v1/auth/token", "/api/v1/openapi.json"):
            continue
        path = rule.build({arg: _arg_value(rule, arg) for arg in rule.arguments}, append_unknown=False)[1]
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            r = client.open(path, method=method, headers=headers)
            assert r.status_code == 401, (method, path, r.status_code)
            checked += 1
    assert checked >= 4


def test_api_ignores_the_page_session_cookie(client, counsellor):
    login(client, counsellor)
    assert client.get("/").status_code == 200
    assert client.get("/api/v1/me").status_code == 401


def test_wrong_credentials_give_no_token(client, counsellor):
    r = client.post("/api/v1/auth/token", json={"username": counsellor, "password": "wrong horse battery"})
    assert r.status_code == 401 and r.get_json()["error"] == "invalid_credentials"
    r2 = client.post("/api/v1/auth/token", json={"username": "nobody.here", "password": "wrong horse battery"})
    assert r2.status_code == 401 and r2.get_json() == r.get_json()


def test_getting_an_api_token_does_not_end_the_web_session(client, counsellor):
    login(client, counsellor)
    api_token(client, counsellor)
    assert _signed_in(client)
