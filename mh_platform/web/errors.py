"""Domain errors and HTTP errors → responses: JSON under ``/api/``, a page otherwise.

NotFound — and anything outside the caller's scope, which the services report as NotFound — is 404;
Forbidden 403; ValidationFailed 422 (with the list of field errors); InvalidTransition and Conflict
409. No traceback, SQL or file path ever reaches a response; unexpected errors are logged and
answered with a plain 500.

Pages show a domain error in the page's language through ``error_text``: the error's English
template (marked ``N_`` in the core/services, see ``core.i18n``) is looked up in the catalog and its
parameters filled in — a form field name becomes the field's label, and a state, action, level, tier
or role code its display name. The JSON API keeps the English ``message`` and the ``errors`` list.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask, Response, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from mh_platform.core.errors import (
    Conflict,
    DomainError,
    Forbidden,
    InvalidTransition,
    NotFound,
    ValidationFailed,
)
from mh_platform.web.authz import Unauthenticated, safe_next
from mh_platform.web.labels import role_label

log = logging.getLogger("mh_platform.web")

STATUS: dict[type[DomainError], int] = {
    NotFound: 404,
    Forbidden: 403,
    ValidationFailed: 422,
    InvalidTransition: 409,
    Conflict: 409,
}


_DB_DOWN = {"OperationalError", "InterfaceError", "DisconnectionError"}


def _database_unavailable(exc: BaseException) -> bool:
    """The database cannot be reached (fail closed with 503; nothing was acknowledged)."""
    cls = type(exc)
    return cls.__module__.startswith("sqlalchemy") and any(c.__name__ in _DB_DOWN for c in cls.__mro__)


# Form fields the services name in their messages (``%(field)s``) → the label a page shows. A field
# that is not listed is shown as "此项" (this field): an internal name never reaches a page.
FIELD_LABELS: dict[str, Any] = {
    "note": _l("记录内容"),
    "reason": _l("理由"),
    "summary": _l("个案摘要"),
    "goal": _l("目标"),
    "action": _l("措施"),
    "review_at": _l("复查时间"),
    "due_at": _l("随访时间"),
    "at": _l("时间"),
    "appointment_at": _l("就诊时间"),
    "handover_note": _l("交接说明"),
    "recommendations": _l("诊疗建议"),
    "return_advice": _l("复学建议"),
}


def error_text(exc: DomainError, labels: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """The message of ``exc`` for a page, in the current language.

    ``labels`` maps a parameter name to the display names of its values (e.g. ``{"status":
    STATUS_LABELS}``), for messages such as "cannot %(action)s a flag that is %(status)s"; ``field``
    uses ``FIELD_LABELS`` and ``role`` the role names. A template that is not in the catalog is shown as
    written (the parameters still filled in)."""
    template = getattr(exc, "template", None) or str(exc)
    params: dict[str, Any] = {}
    for name, value in getattr(exc, "params", {}).items():
        if name == "field":
            shown: Any = FIELD_LABELS.get(value) or _("此项")
        elif name == "role":
            shown = role_label(value)
        else:
            shown = (labels or {}).get(name, {}).get(value, value)
        params[name] = shown if isinstance(shown, int | float) else str(shown)
    return _(template, **params) if params else _(template)


def status_for(exc: DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def wants_json() -> bool:
    return request.path.startswith("/api/")


def _page_message(status: int) -> str:
    return {
        400: _("请求有误。"),
        401: _("请先登录。"),
        403: _("您的角色无权进行此操作。"),
        404: _("未找到，或不在您的权限范围内。"),
        405: _("不支持此请求方式。"),
        409: _("状态已变化，无法进行此操作，请刷新后重试。"),
        413: _("提交的内容过大。"),
        422: _("输入有误，请检查后重试。"),
        429: _("尝试过于频繁，请稍后再试。"),
        500: _("服务器出错，请稍后再试。"),
        503: _("服务暂时不可用，请稍后再试。"),
    }.get(status, _("请求无法完成。"))


def error_response(status: int, code: str, message: str, errors: list[dict] | None = None,
                   headers: dict[str, str] | None = None) -> Any:
    if wants_json():
        body: dict[str, Any] = {"error": code, "message": message}
        if errors:
            body["errors"] = errors
        resp = jsonify(body)
        resp.status_code = status
    else:
        resp = Response(render_template("errors/error.html", status=status, message=message, errors=errors or []),
                        status=status)
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


def register(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(exc: DomainError) -> Any:
        status = status_for(exc)
        if isinstance(exc, NotFound):
            # Same body for "missing" and "out of scope", whatever the service said.
            return error_response(404, "not_found", _page_message(404) if not wants_json() else "not found")
        if wants_json():
            return error_response(status, exc.code, str(exc), exc.errors if isinstance(exc, ValidationFailed) else None)
        # a page: the message in the page's language; per-field details are the API's (field names are internal)
        return error_response(status, exc.code, error_text(exc) or _page_message(status))

    @app.errorhandler(Unauthenticated)
    def _unauth(_exc: Unauthenticated) -> Any:
        if wants_json():
            return error_response(401, "unauthorized", "a valid bearer token is required",
                                  headers={"WWW-Authenticate": 'Bearer realm="mhp"'})
        return redirect(url_for("auth.login", next=safe_next(request.full_path)))

    @app.errorhandler(CSRFError)
    def _csrf(_exc: CSRFError) -> Any:
        return error_response(400, "csrf_failed", _("表单已过期或无效，请返回刷新页面后重试。"))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Any:
        status = exc.code or 500
        code = (exc.name or "error").lower().replace(" ", "_")
        msg = (exc.description or "") if wants_json() else _page_message(status)
        if status == 404 and wants_json():
            msg = "not found"
        resp = error_response(status, code, msg)
        if status == 405 and hasattr(exc, "valid_methods") and exc.valid_methods:
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        if status == 429:
            resp.headers["Retry-After"] = "60"
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Any:
        if _database_unavailable(exc):
            log.error("database unavailable on %s %s: %s", request.method, request.path, type(exc).__name__)
            return error_response(503, "unavailable", _page_message(503) if not wants_json()
                                  else "the service is temporarily unavailable", headers={"Retry-After": "30"})
        if app.config.get("MHP_PROPAGATE_ERRORS"):
            raise exc
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal_error", _page_message(500) if not wants_json() else "internal error")
