"""The Flask application factory.

``create_app(settings=None, ctx=None)`` builds (or accepts) the ServiceContext, checks the master
key (``bootstrap_keys``), binds the extensions, the security headers and error handlers, and
registers every blueprint listed in ``BLUEPRINTS``.

To plug in an area, add ONE line to ``BLUEPRINTS``: ``"module.path:attribute"`` of a Blueprint.
Pages go under ``mh_platform/web/blueprints/<area>.py`` with templates in
``mh_platform/web/templates/<area>/``; JSON endpoints use a blueprint whose ``url_prefix`` starts with
``/api/v1`` (see ``blueprints/api_v1.py``) and ``@api_doc`` on every view.

Every endpoint is private by default: pages need a signed-in user, ``/api/v1`` a bearer token,
every non-API POST/PUT/PATCH/DELETE a CSRF token. Use ``@public`` (web.authz) for the exceptions.
"""

from __future__ import annotations

import importlib
import logging
import pathlib
from datetime import timedelta
from typing import Any

from flask import Flask, flash, g, redirect, request, session, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user, logout_user

from mh_platform.config import Settings, load_settings
from mh_platform.services import auth as auth_service
from mh_platform.services.context import ServiceContext, build_context
from mh_platform.services.keys import bootstrap_keys
from mh_platform.web import errors, security
from mh_platform.web.authz import Unauthenticated, WebUser, is_public_endpoint, safe_next
from mh_platform.web.extensions import SUPPORTED_LOCALES, babel, csrf, limiter, login_manager
from mh_platform.web.labels import role_label, unit_kind_label
from mh_platform.web.nav import nav_links

log = logging.getLogger("mh_platform.web")

# "module:attribute" of each Blueprint to register, in order. Other areas append one line each.
BLUEPRINTS: list[str] = [
    "mh_platform.web.blueprints.auth:bp",
    "mh_platform.web.blueprints.main:bp",
    "mh_platform.web.blueprints.api_v1:bp",
    "mh_platform.web.blueprints.student:bp",
    "mh_platform.web.blueprints.cases:bp",
    "mh_platform.web.blueprints.api_cases:bp",
    "mh_platform.web.blueprints.screening:bp",
    "mh_platform.web.blueprints.flags:bp",
    "mh_platform.web.blueprints.api_flags:bp",
]

WEB_DIR = pathlib.Path(__file__).resolve().parent
TRANSLATIONS = WEB_DIR / "translations"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ABSOLUTE_SESSION_HOURS = 12  # a session ends this long after login, however active
# Blueprints whose views authenticate by a one-time access code (web/blueprints/student.py): for their
# @public views a staff login is neither read nor extended (a student PC never sees a staff session's
# effects) and g.actor stays None; CSRF is still checked on every unsafe method. A view there that is
# not @public gets the normal staff login check (default-deny is kept).
CODE_AUTHENTICATED_BLUEPRINTS = frozenset({"student"})


def create_app(settings: Settings | None = None, ctx: ServiceContext | None = None,
               extra_config: dict[str, Any] | None = None) -> Flask:
    if ctx is None:
        settings = settings or load_settings()
        ctx = build_context(settings)
    settings = ctx.settings
    bootstrap_keys(ctx)  # refuses a wrong master key before serving anything
    _ensure_catalogs()
    _warm_instruments()

    app = Flask(__name__, static_folder="static", template_folder="templates")
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="__Host-mhp_session" if settings.cookie_secure else "mhp_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.cookie_secure,
        SESSION_COOKIE_PATH="/",
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=settings.session_minutes),
        SESSION_REFRESH_EACH_REQUEST=True,
        REMEMBER_COOKIE_DURATION=timedelta(seconds=0),
        WTF_CSRF_CHECK_DEFAULT=False,  # checked in _guard for every non-API request (default on)
        WTF_CSRF_TIME_LIMIT=None,  # the token is bound to the session, which has its own timeouts
        WTF_CSRF_SSL_STRICT=settings.cookie_secure,
        BABEL_DEFAULT_LOCALE=settings.default_locale,
        BABEL_DEFAULT_TIMEZONE="Asia/Shanghai",
        BABEL_TRANSLATION_DIRECTORIES=str(TRANSLATIONS),
        RATELIMIT_STORAGE_URI=settings.rate_limit_storage,
        # database:// (web.rate_limit_storage): counters shared by every worker, in the app's database
        RATELIMIT_STORAGE_OPTIONS={"ctx": ctx} if settings.rate_limit_storage.startswith("database:") else {},
        RATELIMIT_HEADERS_ENABLED=True,
        MAX_CONTENT_LENGTH=32 * 1024 * 1024,
        MHP_LOGIN_RATE_LIMIT=settings.extra.get("login_rate_limit", "10 per minute; 50 per hour"),
        MHP_LOGIN_IP_RATE_LIMIT=settings.extra.get("login_ip_rate_limit", "120 per minute; 2000 per hour"),
        MHP_PROPAGATE_ERRORS=False,
    )
    if extra_config:
        app.config.update(extra_config)
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    app.extensions["mhp"] = ctx
    app.extensions["mhp_settings"] = settings

    login_manager.init_app(app, add_context_processor=False)  # templates use g.actor, not current_user
    login_manager.session_protection = "basic"
    login_manager.user_loader(_load_user)
    csrf.init_app(app)
    babel.init_app(app, locale_selector=_select_locale)
    limiter.init_app(app)
    _skip_idle_limiter_hook(app)

    app.before_request(_guard)
    errors.register(app)
    security.register(app)
    app.jinja_env.globals.update(role_label=role_label, unit_kind_label=unit_kind_label, nav_links=nav_links,
                                 current_locale=lambda: str(get_locale() or settings.default_locale),
                                 settings=settings)

    for target in BLUEPRINTS:
        module_name, _sep, attr = target.partition(":")
        bp = getattr(importlib.import_module(module_name), attr or "bp")
        app.register_blueprint(bp)
    return app


def _load_user(token: str) -> WebUser | None:
    """Flask-Login: the cookie's session token → the user's current actor (None once rotated)."""
    from flask import current_app

    actor = auth_service.actor_from_session_token(current_app.extensions["mhp"], token)
    return WebUser(actor, token) if actor is not None else None


def _select_locale() -> str:
    if request.path.startswith("/api/"):
        return "en"
    lang = session.get("lang")
    if lang in SUPPORTED_LOCALES:
        return lang
    return app_settings().default_locale


def app_settings() -> Settings:
    from flask import current_app

    return current_app.extensions["mhp_settings"]


def _bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _sep, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _skip_idle_limiter_hook(app: Flask) -> None:
    """Flask-Limiter checks every request in a ``before_request`` hook, for application-wide, default,
    blueprint and meta limits; a limit set with the ``@limiter.limit`` decorator (all the platform
    uses: logins, tokens, TOTP, student codes) is checked by the decorator's own wrapper. With none of
    the former the hook decides nothing, yet it costs ~8 % of an autosave's CPU, so it is taken out —
    only then: any such limit configured (or a Flask-Limiter whose internals differ) keeps it."""
    lm = getattr(limiter, "limit_manager", None)
    lists = [getattr(lm, "_application_limits", None), getattr(lm, "_default_limits", None),
             getattr(lm, "_blueprint_limits", None), getattr(limiter, "_meta_limits", None)]
    if any(x is None or len(x) for x in lists):
        return
    hooks = app.before_request_funcs.get(None, [])
    app.before_request_funcs[None] = [f for f in hooks if f != limiter._check_request_limit]


def _guard() -> Any:
    """Runs before every request: who is asking, and default-deny for everything not public."""
    from flask import current_app

    ctx: ServiceContext = current_app.extensions["mhp"]
    g.actor = None
    if request.endpoint == "static":
        return None  # no session work (and no database look-up) for stylesheets and icons
    public = is_public_endpoint(request.endpoint)
    if request.path.startswith("/api/"):
        # Bearer tokens only: cookies are ignored, so the API needs no CSRF protection.
        token = _bearer_token()
        if token:
            g.actor = auth_service.actor_from_api_token(ctx, token)
            g.api_token = token
        if g.actor is None and not public:
            raise Unauthenticated()
        return None

    if request.method not in SAFE_METHODS:
        csrf.protect()
    if public and request.blueprint in CODE_AUTHENTICATED_BLUEPRINTS:
        return None  # the student area: the access code is the credential; no staff login is read

    if session.get("_user_id"):
        now = ctx.now().timestamp()
        seen, started = session.get("_seen"), session.get("_started")
        idle = ctx.settings.session_minutes * 60
        if (not isinstance(seen, int | float) or not isinstance(started, int | float)
                or now - seen > idle or now - started > ABSOLUTE_SESSION_HOURS * 3600 or now < started):
            logout_user()
            lang = session.get("lang")
            session.clear()
            if lang:
                session["lang"] = lang
            flash(_("会话已超时，请重新登录。"), "info")
        else:
            session["_seen"] = now
    if current_user.is_authenticated:
        g.actor = current_user.actor
    if g.actor is None and not public:
        if request.method in SAFE_METHODS:
            return redirect(url_for("auth.login", next=safe_next(request.full_path)))
        return redirect(url_for("auth.login"))
    return None


def _warm_instruments() -> None:
    """Read and validate every instrument definition now, not in a student's first request: the
    JSON-schema and semantic checks take ~0.1 s per file, paid once per process (each gunicorn
    worker) at start instead of as a first-page delay. A definition that fails is logged here and
    refused again when a page asks for it."""
    from mh_platform.core.instruments import instrument_files, load_instrument

    for path in instrument_files():
        try:
            load_instrument(path.stem)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the other pages
            log.warning("instrument %s not loaded: %s", path.stem, exc)


def _ensure_catalogs() -> None:
    """Compile a message catalog whose .mo is missing or older than its .po (dev convenience;
    ``make translations`` does the same ahead of time for deployments)."""
    for po in TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"):
        mo = po.with_suffix(".mo")
        try:
            if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
                continue
            from babel.messages.mofile import write_mo
            from babel.messages.pofile import read_po

            with po.open("rb") as f:
                catalog = read_po(f)
            with mo.open("wb") as f:
                write_mo(f, catalog)
        except OSError as exc:  # read-only install: use what is there
            log.warning("cannot compile %s: %s", po, exc)
