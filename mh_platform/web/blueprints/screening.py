"""Staff pages of the screening area: campaigns, completion, code slips, consent, roster and paper import.

Thin: parse, check the permission, call a service (which decides scope: out of scope is 404), render.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from mh_platform.core.authz import Permission
from mh_platform.core.errors import DomainError, ValidationFailed
from mh_platform.core.types import Role, UnitKind
from mh_platform.services import campaigns, completion, consent, paper_import, roster
from mh_platform.web.authz import current_actor, has_permission, requires, service_ctx
from mh_platform.web.errors import error_text
from mh_platform.web.home import HomePanel, PanelData, register_panel
from mh_platform.web.nav import NavLink, register_nav

bp = Blueprint("screening", __name__, url_prefix="/screening")
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
STATUS_LABELS = {"scheduled": _l("未开始"), "open": _l("进行中"), "closed": _l("已结束"), "cancelled": _l("已取消")}
CONSENT_LABELS = {"granted": _l("同意"), "refused": _l("不同意"), "withdrawn": _l("已撤回"), "missing": _l("未回收")}


def _uuid(v: str) -> uuid.UUID:
    try:
        return uuid.UUID(v)
    except (ValueError, TypeError):
        abort(404)


def _campaigns_panel(ctx, actor) -> PanelData:  # noqa: ANN001
    items = [c for c in campaigns.list_campaigns(ctx, actor) if c.status in ("open", "scheduled")]
    return PanelData(count=len(items), link=url_for("screening.index"))


register_panel(HomePanel(key="screening.campaigns", title=_l("进行中的心理测评"),
                         roles=frozenset(campaigns.VIEWERS), loader=_campaigns_panel, order=40))


@bp.app_template_filter("local_dt")
def local_dt(d: datetime | None) -> str:
    return d.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M") if d else ""


@bp.get("/")
@requires(Permission.CAMPAIGN_READ)
def index() -> Any:
    actor = current_actor()
    items = campaigns.list_campaigns(service_ctx(), actor)
    return render_template("screening/index.html", items=items, labels=STATUS_LABELS,
                           can_create=actor.role in campaigns.CREATORS,
                           can_consent=has_permission(actor, Permission.CONSENT_WRITE),
                           can_import=has_permission(actor, Permission.ROSTER_IMPORT))


def _units_for_form(actor) -> list[tuple[str, str]]:  # noqa: ANN001
    return campaigns.units_for_form(service_ctx(), actor)


def _parse_local(v: str | None) -> datetime:
    try:
        return datetime.strptime(v or "", "%Y-%m-%dT%H:%M").replace(tzinfo=LOCAL_TZ)
    except ValueError:
        raise ValidationFailed(_("请填写开始和结束时间")) from None


@bp.route("/new", methods=["GET", "POST"])
@requires(Permission.CAMPAIGN_CREATE)
def new() -> Any:
    actor = current_actor()
    error = None
    if request.method == "POST":
        try:
            cid = campaigns.create(service_ctx(), actor, name=request.form.get("name", ""),
                                   unit_ids=[_uuid(u) for u in request.form.getlist("unit")],
                                   grades=[int(g) for g in request.form.getlist("grade") if g.isdigit()],
                                   opens_at=_parse_local(request.form.get("opens_at")),
                                   closes_at=_parse_local(request.form.get("closes_at")))
            flash(_("测评已创建，将在开始时间自动开放。"), "success")
            return redirect(url_for("screening.campaign", cid=cid), code=303)
        except ValidationFailed as exc:
            error = error_text(exc)
    return render_template("screening/new.html", units=_units_for_form(actor), error=error, form=request.form)


@bp.get("/<cid>")
@requires(Permission.CAMPAIGN_READ)
def campaign(cid: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    c = campaigns.view(ctx, actor, _uuid(cid))
    unit_id = _uuid(request.args["unit"]) if request.args.get("unit") else None
    rep = completion.completion(ctx, actor, c.id, unit_id)
    return render_template("screening/campaign.html", c=c, rep=rep, labels=STATUS_LABELS, Role=Role,
                           UnitKind=UnitKind, can_print=actor.role in campaigns.SLIP_PRINTERS,
                           can_paper=actor.role in paper_import.IMPORTERS,
                           can_todo=actor.role in completion.TO_FINISH_READERS)


EXPORT_LABELS = {"unit": _l("单位"), "eligible": _l("应测"), "consented": _l("已同意"), "started": _l("已开始"),
                 "completed": _l("已完成"), "readminister": _l("建议重测"), "total": _l("合计"), "suppressed": "*",
                 "note": _l("* 为保护隐私不显示：含1–4人格子的单位整行不显示，并另有一个单位一同不显示。")}


@bp.post("/<cid>/completion.<fmt>")
@requires(Permission.CAMPAIGN_READ)
def completion_export(cid: str, fmt: str) -> Any:
    """The completion table as a CSV or XLSX download (aggregates only). A POST with the form's CSRF
    token: each export is written to the event log, so another site cannot make an officer's
    browser log exports they never asked for."""
    if fmt not in completion.EXPORT_FORMATS:
        abort(404)
    unit_id = _uuid(request.form["unit"]) if request.form.get("unit") else None
    out = completion.export(service_ctx(), current_actor(), _uuid(cid), unit_id, fmt,
                            {k: str(v) for k, v in EXPORT_LABELS.items()})
    return Response(out.data, mimetype=out.mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{out.filename}"'})


@bp.post("/<cid>/class/<class_id>/slips")
@requires(Permission.CODE_PRINT)
def slips(cid: str, class_id: str) -> Any:
    sheet = campaigns.print_slips(service_ctx(), current_actor(), _uuid(cid), _uuid(class_id))
    return render_template("screening/slips.html", sheet=sheet, start_url=url_for("student.start", _external=True),
                           back_url=url_for("screening.campaign", cid=cid))


@bp.get("/<cid>/class/<class_id>/todo")
@requires(Permission.CAMPAIGN_READ)
def todo(cid: str, class_id: str) -> Any:
    left = completion.to_finish(service_ctx(), current_actor(), _uuid(cid), _uuid(class_id))
    return render_template("screening/todo.html", left=left, cid=cid, class_id=class_id)


@bp.get("/consent")
@requires(Permission.CONSENT_WRITE)
def consent_overview() -> Any:
    rows = consent.coverage(service_ctx(), current_actor())
    return render_template("screening/consent.html", rows=rows)


@bp.route("/consent/<class_id>", methods=["GET", "POST"])
@requires(Permission.CONSENT_WRITE)
def consent_class(class_id: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    cls_id = _uuid(class_id)
    if request.method == "POST":
        items = []
        method = request.form.get("method", "paper")
        for key, val in request.form.items():
            if key.startswith("s_") and val in ("granted", "refused"):
                items.append(consent.ConsentIn(_uuid(key[2:]), val, method))
        try:
            consent.record_many(ctx, actor, items)
            for key, val in request.form.items():
                if key.startswith("s_") and val == "withdraw":
                    consent.withdraw(ctx, actor, _uuid(key[2:]))
            flash(_("已保存。"), "success")
        except DomainError as exc:
            flash(error_text(exc), "error")
        return redirect(url_for("screening.consent_class", class_id=class_id), code=303)
    name, rows = consent.class_list(ctx, actor, cls_id)
    return render_template("screening/consent_class.html", name=name, rows=rows, labels=CONSENT_LABELS)


@bp.route("/roster", methods=["GET", "POST"])
@requires(Permission.ROSTER_IMPORT)
def roster_import() -> Any:
    pv, error, done = None, None, False
    if request.method == "POST":
        f = request.files.get("file")
        data = f.read(roster.DEFAULT_MAX_BYTES * 4 + 1) if f else b""
        try:
            if request.form.get("action") == "commit":
                pv = roster.commit(service_ctx(), current_actor(), data, f.filename if f else "")
                done = True
            else:
                pv = roster.preview(service_ctx(), current_actor(), data, f.filename if f else "")
        except ValidationFailed as exc:
            error = error_text(exc)
            if exc.errors:
                pv = roster.ImportPreview(errors=[roster.RowError(e["row"], e["column"], e["message"])
                                                  for e in exc.errors])
    return render_template("screening/import.html", pv=pv, error=error, done=done, kind="roster",
                           action=url_for("screening.roster_import"))


@bp.route("/<cid>/paper", methods=["GET", "POST"])
@requires(Permission.SCORE_READ)
def paper(cid: str) -> Any:
    pv, error, done = None, None, False
    camp_id = _uuid(cid)
    campaigns.view(service_ctx(), current_actor(), camp_id)  # a missing or out-of-scope campaign: 404
    if request.method == "POST":
        f = request.files.get("file")
        data = f.read(roster.DEFAULT_MAX_BYTES * 4 + 1) if f else b""
        try:
            if request.form.get("action") == "commit":
                pv = paper_import.commit(service_ctx(), current_actor(), data, f.filename if f else "", camp_id)
                done = True
            else:
                pv = paper_import.preview(service_ctx(), current_actor(), data, f.filename if f else "", camp_id)
        except ValidationFailed as exc:
            error = error_text(exc)
            if exc.errors:
                pv = paper_import.PaperPreview(
                    errors=[roster.RowError(e["row"], e["column"], e["message"]) for e in exc.errors
                            if not e.get("critical")],
                    critical_lines=[e["row"] for e in exc.errors if e.get("critical")])
    return render_template("screening/import.html", pv=pv, error=error, done=done, kind="paper",
                           action=url_for("screening.paper", cid=cid))


register_nav(NavLink(key="screening", label=_l("心理测评"), endpoint="screening.index", order=40,
                     visible=lambda a: has_permission(a, Permission.CAMPAIGN_READ)))
