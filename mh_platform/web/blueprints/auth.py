"""Sign in, second factor, sign out, change password.

How sessions work: the cookie (a signed Flask session) carries the user's rotating ``session_token``
(Flask-Login's ``get_id``), never the user id. Login clears the old session and the service issues a
new token; logout, password change, disable and role change rotate the token, so every earlier
cookie is refused on its next request. Idle (``session_minutes``) and absolute timeouts are checked
in ``app._guard`` against the service clock.
"""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_login import login_user, logout_user

from mh_platform.core.errors import ValidationFailed
from mh_platform.services import auth as auth_service
from mh_platform.services import totp as totp_service
from mh_platform.services.context import Actor
from mh_platform.web.authz import WebUser, current_actor, public, safe_next, service_ctx
from mh_platform.web.errors import error_text
from mh_platform.web.extensions import throttle_login
from mh_platform.web.forms import ChangePasswordForm, LoginForm, TotpForm

bp = Blueprint("auth", __name__)

PENDING_TOTP_SECONDS = 300


def _fresh_session() -> None:
    """Drop everything in the old session (fixation), keeping only the language choice."""
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang


def _start_session(actor: Actor, token: str, next_url: str | None) -> Any:
    _fresh_session()
    login_user(WebUser(actor, token), remember=False, fresh=True)
    session.permanent = True
    now = service_ctx().now().timestamp()
    session["_started"] = now
    session["_seen"] = now
    return redirect(safe_next(next_url) or url_for("main.home"))


@bp.route("/login", methods=["GET", "POST"])
@public
@throttle_login
def login() -> Any:
    if g.get("actor") is not None:
        return redirect(url_for("main.home"))
    form = LoginForm()
    next_url = safe_next(request.args.get("next"))
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            ctx = service_ctx()
            res = auth_service.authenticate(ctx, form.username.data or "", form.password.data or "")
            if res.ok and res.actor is not None and res.pending_token:  # the code step comes next
                _fresh_session()
                session["_2fa_token"] = res.pending_token
                session["_2fa_at"] = ctx.now().timestamp()
                session["_2fa_next"] = next_url
                return redirect(url_for("auth.totp"))
            if res.ok and res.actor is not None and res.session_token:
                return _start_session(res.actor, res.session_token, next_url)
            form.form_errors.append(_("用户名或密码错误，或账户已被暂时锁定。"))
            status = 401
        else:
            status = 422
    return render_template("auth/login.html", form=form, next=next_url), status


def _pending_token() -> str | None:
    token, at = session.get("_2fa_token"), session.get("_2fa_at")
    if not token or not isinstance(at, int | float):
        return None
    if service_ctx().now().timestamp() - at > PENDING_TOTP_SECONDS:
        return None
    return token


@bp.route("/login/totp", methods=["GET", "POST"])
@public
@throttle_login
def totp() -> Any:
    ctx = service_ctx()
    token = _pending_token()
    pend = totp_service.pending(ctx, token) if token else None
    if token is None or pend is None:
        _fresh_session()
        flash(_("请重新登录。"), "info")
        return redirect(url_for("auth.login"))
    form = TotpForm()
    secret = None if pend.enrolled else totp_service.candidate_secret(ctx, token)
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            code = (form.code.data or "").strip()
            done = totp_service.verify(ctx, token, code) if pend.enrolled else totp_service.enrol(ctx, token, code)
            if done is not None:
                return _start_session(done.actor, done.session_token, session.get("_2fa_next"))
            form.code.errors = [*form.code.errors, _("验证码不正确或已过期。")]
            status = 401
        else:
            status = 422
    uri = totp_service.provisioning_uri(secret, pend.actor.username) if secret else None
    return render_template("auth/totp.html", form=form, enrolling=not pend.enrolled, secret=secret, uri=uri), status


@bp.post("/logout")
def logout() -> Any:
    actor = g.get("actor")
    if actor is not None:
        auth_service.logout(service_ctx(), actor)  # rotates the token: this cookie is dead everywhere
    logout_user()
    _fresh_session()
    flash(_("您已安全退出。"), "info")
    resp = make_response(redirect(url_for("auth.login")))
    resp.headers["Clear-Site-Data"] = '"cache", "storage"'
    return resp


@bp.route("/account/password", methods=["GET", "POST"])
def change_password() -> Any:
    form = ChangePasswordForm()
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                auth_service.change_password(service_ctx(), current_actor(), form.current.data or "",
                                             form.new.data or "")
            except ValidationFailed as exc:
                msg = str(exc)
                if "current password" in msg:
                    form.current.errors = [*form.current.errors, _("当前密码不正确。")]
                elif "differ" in msg:
                    form.new.errors = [*form.new.errors, _("新密码不能与当前密码相同。")]
                else:
                    form.new.errors = [*form.new.errors, error_text(exc)]
                status = 422
            else:
                logout_user()
                _fresh_session()
                flash(_("密码已修改，请用新密码重新登录。"), "info")
                resp = make_response(redirect(url_for("auth.login")))
                resp.headers["Clear-Site-Data"] = '"cache", "storage"'
                return resp
        else:
            status = 422
    return render_template("auth/change_password.html", form=form), status
