"""Home page per role, the roster page, the language switch and the health check."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, current_app, jsonify, redirect, render_template, request, session, url_for
from flask_babel import lazy_gettext as _l

from mh_platform.core.types import Role
from mh_platform.services import profile as profile_service
from mh_platform.services import students_read
from mh_platform.web.authz import current_actor, public, safe_next, service_ctx
from mh_platform.web.extensions import SUPPORTED_LOCALES
from mh_platform.web.home import HomePanel, PanelData, PanelLine, panels_for, register_panel

bp = Blueprint("main", __name__)

ROSTER_ROLES = frozenset(students_read.FIELDS_BY_ROLE)


# ---- the foundation's own home panels ---------------------------------------------------------------

def _roster_panel(ctx, actor) -> PanelData:  # noqa: ANN001
    return PanelData(count=students_read.count_in_scope(ctx, actor), link=url_for("main.roster"))


def _accounts_panel(ctx, actor) -> PanelData:  # noqa: ANN001
    summary = profile_service.account_summary(ctx, actor)
    lines = [PanelLine(str(_l("已锁定账户：%(n)d", n=summary.locked))),
             PanelLine(str(_l("已停用账户：%(n)d", n=summary.disabled)))]
    return PanelData(count=summary.locked, lines=lines)


register_panel(HomePanel(key="main.roster", title=_l("我范围内的学生"), roles=ROSTER_ROLES,
                         loader=_roster_panel, order=900))
register_panel(HomePanel(key="main.accounts", title=_l("账户状态"), roles=frozenset({Role.SYSADMIN}),
                         loader=_accounts_panel, order=100, urgent=True))


# ---- pages ------------------------------------------------------------------------------------------

@bp.get("/")
def home() -> Any:
    ctx, actor = service_ctx(), current_actor()
    prof = profile_service.profile(ctx, actor)
    panels = panels_for(ctx, actor, propagate=current_app.config.get("MHP_PROPAGATE_ERRORS", False))
    return render_template("main/home.html", profile=prof, panels=panels)


@bp.get("/roster")
def roster() -> Any:
    actor = current_actor()
    if actor.role not in ROSTER_ROLES:
        abort(404)
    try:
        page = min(max(1, int(request.args.get("page", "1"))), students_read.MAX_PAGE)
    except ValueError:
        page = 1
    result = students_read.list_students(service_ctx(), actor, page=page, per_page=50)
    fields = students_read.fields_for(actor.role)
    pages = max(1, (result.total + result.per_page - 1) // result.per_page)
    return render_template("main/roster.html", result=result, fields=fields, pages=pages)


@bp.post("/lang")
@public
def set_language() -> Any:
    lang = request.form.get("lang", "")
    if lang in SUPPORTED_LOCALES:
        session["lang"] = lang
    target = safe_next(request.form.get("next"))
    return redirect(target or url_for("main.home"))


@bp.get("/healthz")
@public
def healthz() -> Any:
    return jsonify(status="ok")


@bp.get("/favicon.ico")
@public
def favicon() -> Any:
    """Browsers ask for /favicon.ico on pages that link no icon (the student pages, printouts): the site icon."""
    import pathlib

    icon = pathlib.Path(current_app.static_folder or "", "favicon.svg").read_bytes()
    return current_app.response_class(icon, mimetype="image/svg+xml")
