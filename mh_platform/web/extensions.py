"""Flask extensions, created once and bound to each app in ``create_app`` (the init_app pattern).

- ``login_manager`` (Flask-Login): the cookie holds the user's rotating ``session_token``, never the
  user id; remember-me cookies are not used.
- ``csrf`` (Flask-WTF): every form. The app checks it in a ``before_request`` for every non-API
  request, so a new blueprint is protected without doing anything; ``/api/`` uses bearer tokens only.
- ``babel`` (Flask-Babel): Simplified Chinese first, English on request (language switch in the session).
- ``limiter`` (Flask-Limiter): login, token and TOTP endpoints; storage from ``Settings.rate_limit_storage``.
"""

from __future__ import annotations

from flask import request
from flask_babel import Babel
from flask_limiter import Limiter
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect


def _client_address() -> str:
    # Behind a reverse proxy, deployers wrap the app in ProxyFix so remote_addr is the client.
    return request.remote_addr or "unknown"


login_manager = LoginManager()
csrf = CSRFProtect()
babel = Babel()
limiter = Limiter(key_func=_client_address, default_limits=[], headers_enabled=True)

SUPPORTED_LOCALES = ("zh_CN", "en")
