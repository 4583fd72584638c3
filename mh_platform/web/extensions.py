"""Flask extensions, created once and bound to each app in ``create_app`` (the init_app pattern).

- ``login_manager`` (Flask-Login): the cookie holds the user's rotating ``session_token``, never the
  user id; remember-me cookies are not used.
- ``csrf`` (Flask-WTF): every form. The app checks it in a ``before_request`` for every non-API
  request, so a new blueprint is protected without doing anything; ``/api/`` uses bearer tokens only.
- ``babel`` (Flask-Babel): Simplified Chinese first, English on request (language switch in the session).
- ``limiter`` (Flask-Limiter): login, token and TOTP endpoints, student codes; storage from
  ``Settings.rate_limit_storage`` (default ``database://``: ``web.rate_limit_storage``, shared by all workers).
"""

from __future__ import annotations

from flask import current_app, request
from flask_babel import Babel
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

from mh_platform.web import rate_limit_storage  # noqa: F401 - registers the database:// storage


def _client_address() -> str:
    # Behind a reverse proxy, deployers wrap the app in ProxyFix so remote_addr is the client.
    return request.remote_addr or "unknown"


# werkzeug parses a request body into ``request.form`` for these two types only (FormDataParser.parse)
FORM_MIMETYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})


class _CSRFProtect(CSRFProtect):
    """Flask-WTF's CSRF protection, unchanged except where a request whose body is not a form looks
    for its token. Flask-WTF looks in ``request.form`` first, then in the headers; for any other body
    (the autosave's JSON) werkzeug leaves the form empty, so that look-up finds nothing and only costs
    setting up a form parse (~4 % of an autosave's CPU). Such a request's token is read from the
    same headers, in the same order; the check itself (``validate_csrf``, the referrer rule on HTTPS)
    is Flask-WTF's own."""

    def _get_csrf_token(self) -> str | None:
        if request.mimetype in FORM_MIMETYPES:
            return super()._get_csrf_token()  # type: ignore[no-any-return]
        for header_name in current_app.config["WTF_CSRF_HEADERS"]:
            token = request.headers.get(header_name)
            if token:
                return token
        return None


login_manager = LoginManager()
csrf = _CSRFProtect()
babel = Babel()
limiter = Limiter(key_func=_client_address, default_limits=[], headers_enabled=True)

SUPPORTED_LOCALES = ("zh_CN", "en")


# ---- login throttling ---------------------------------------------------------------------------------
# Two limits on every password/TOTP/token endpoint: per (client address, username) — brute force on one
# account (the service's lockout is the second line) — and a wider one per address against spraying.
# A whole school behind one NAT address must still be able to sign in at 8 o'clock.

def _login_name() -> str:
    from flask import session

    name = request.form.get("username")
    if name is None and request.is_json:
        body = request.get_json(silent=True)
        name = body.get("username") if isinstance(body, dict) else None
    if name is None and session.get("_2fa_token"):
        name = "totp:" + str(session["_2fa_token"])[:12]
    return str(name or "").strip().lower()[:64]


def login_key() -> str:
    return f"{_client_address()}|{_login_name()}"


def login_limit() -> str:
    from flask import current_app

    return current_app.config["MHP_LOGIN_RATE_LIMIT"]


def login_ip_limit() -> str:
    from flask import current_app

    return current_app.config["MHP_LOGIN_IP_RATE_LIMIT"]


def throttle_login(view):  # noqa: ANN001, ANN201 - a view decorator
    """Both login limits, counted on POST only."""
    view = limiter.limit(login_limit, key_func=login_key, methods=["POST"])(view)
    return limiter.limit(login_ip_limit, methods=["POST"])(view)
