"""Pages for risk flags, concerns and the in-app inbox: each role's work queue, a flag's page with
the actions the transition table allows, the concern form for monitors and teachers.

Thin: parse the form, call one service, redirect or render. Scope is the services' job (404 for
out of scope); a refused action comes back as a flashed message on the same page.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from mh_platform.core.authz import Permission
from mh_platform.core.errors import Conflict, Forbidden, InvalidTransition, ValidationFailed
from mh_platform.core.types import Role
from mh_platform.services import concerns as concern_service
from mh_platform.services import escalation as escalation_service
from mh_platform.services import flags as flag_service
from mh_platform.services import notify as notify_service
from mh_platform.services import queues as queue_service
from mh_platform.web.authz import current_actor, has_permission, service_ctx
from mh_platform.web.errors import error_text
from mh_platform.web.home import HomePanel, PanelData, PanelLine, register_panel
from mh_platform.web.labels import local_dt  # noqa: E402
from mh_platform.web.nav import NavLink, register_nav

bp = Blueprint("flags", __name__)


LEVEL_LABELS = {"red": _l("红色（I级）"), "orange": _l("橙色（II级）"), "yellow": _l("黄色（III级）")}
TIER_LABELS = {"class": _l("班级"), "school": _l("学校"), "county": _l("县区"), "city": _l("市")}
STATUS_LABELS = {"raised": _l("待确认"), "acknowledged": _l("已确认，待访谈"), "assessed": _l("已访谈复核"),
                 "intervention": _l("干预中"), "referral": _l("转介中"), "monitoring": _l("持续关注"),
                 "close_requested": _l("申请结束，待心理教师复核"), "closed": _l("已结束")}
ACTION_LABELS = {"acknowledge": _l("确认收到"), "escalate": _l("上报上一级"), "confirm": _l("访谈确认"),
                 "change_level": _l("调整等级"), "dismiss": _l("排除（误报）"),
                 "start_intervention": _l("开始干预"), "refer": _l("启动转介"), "start_monitoring": _l("转为持续关注"),
                 "close": _l("结束"), "request_close": _l("申请结束"), "review_close": _l("同意结束"),
                 "reject_close": _l("不同意结束")}
EVENT_LABELS = {"flag:raised": _l("预警产生"), "flag:acknowledged": _l("已确认收到"), "flag:escalated": _l("已上报"),
                "flag:reminded": _l("超时提醒"), "flag:confirmed": _l("访谈确认"), "flag:level_changed": _l("等级调整"),
                "flag:level_raised": _l("新证据，等级上调"),
                "flag:retriaged": _l("新证据，重新确认"), "flag:transferred": _l("随学生转到新班级或学校"), "flag:dismissed": _l("排除（误报）"),
                "flag:intervention_started": _l("开始干预"), "flag:referred": _l("启动转介"),
                "flag:monitoring_started": _l("转为持续关注"), "flag:close_requested": _l("申请结束"),
                "flag:close_rejected": _l("不同意结束"), "flag:closed": _l("已结束")}
# display names of the codes a flag error message names (see web.errors.error_text)
ERROR_VALUE_LABELS = {"action": ACTION_LABELS, "status": STATUS_LABELS, "level": LEVEL_LABELS, "tier": TIER_LABELS}
SCOPE_LABELS = {"class": _l("班级"), "school": _l("学校")}
CONCERN_STATUS = {"received": _l("已收到"), "in_progress": _l("处理中"), "closed": _l("已处理完毕")}
URGENCY_LABELS = {"immediate": _l("紧急（现在就需要关注）"), "soon": _l("尽快（这几天）"), "routine": _l("一般")}
CATEGORY_LABELS = {"mood": _l("情绪低落或明显变化"), "self_harm": _l("自伤迹象或言语"), "withdrawal": _l("退缩、孤立"),
                   "conflict": _l("人际冲突或受欺凌"), "family": _l("家庭变故"), "behaviour": _l("行为异常"),
                   "other": _l("其他")}
SOURCE_LABELS = {"band": _l("测评得分区间"), "critical": _l("关键条目"), "critical_unanswered": _l("关键条目未作答"),
                 "deterioration": _l("较上次测评明显加重"), "concern": _l("关注报告"), "model": _l("模型关注信号")}
REASON_ACTIONS = {"escalate", "change_level", "dismiss", "close", "request_close", "reject_close"}
QUEUE_ROLES = frozenset({Role.HEAD_TEACHER, Role.COUNSELLOR, Role.SCHOOL_LEADER, Role.COUNTY_OFFICER,
                         Role.CITY_OFFICER})


bp.app_template_filter("flag_dt")(local_dt)


def _labels() -> dict[str, Any]:
    return {"LEVEL": LEVEL_LABELS, "TIER": TIER_LABELS, "STATUS": STATUS_LABELS, "ACTION": ACTION_LABELS,
            "EVENT": EVENT_LABELS, "CONCERN": CONCERN_STATUS, "URGENCY": URGENCY_LABELS,
            "CATEGORY": CATEGORY_LABELS, "SCOPE": SCOPE_LABELS,
            "REASON_ACTIONS": REASON_ACTIONS}


def _render(template: str, **kw: Any) -> Any:
    return render_template(template, L=_labels(), **kw)


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError):
        abort(404)


def _zh() -> bool:
    from flask_babel import get_locale

    return str(get_locale() or "zh_CN").startswith("zh")


def _band_label(inst: Any, band_id: str | None, zh: bool) -> str | None:
    """The band's label from the instrument definition (any cut-off set or subscale that names it)."""
    if not band_id:
        return None
    bands = [b for cs in inst.cutoff_sets for b in cs.bands] + [b for sc in inst.subscales for b in sc.bands]
    for b in bands:
        if b.id == band_id:
            return b.label_zh if zh else b.label_en
    return band_id


def evidence_label(e: dict[str, Any]) -> list[str]:
    """A piece of evidence as readable parts: source, instrument, band label or item number (no raw codes)."""
    from mh_platform.core.errors import DomainError
    from mh_platform.core.instruments import load_instrument

    zh = _zh()
    source = e.get("source", "")
    detail = e.get("detail") or {}
    parts = [str(SOURCE_LABELS.get(source, source))]
    inst = None
    if detail.get("instrument"):
        try:
            inst = load_instrument(str(detail["instrument"]))
        except (DomainError, OSError, ValueError):
            inst = None
        parts.append(inst.short_name if inst is not None else str(detail["instrument"]))
    if source == "band" and inst is not None:
        parts.append(_band_label(inst, detail.get("band"), zh) or "")
    elif source in ("critical", "critical_unanswered") and detail.get("item") is not None:
        parts.append(str(_("第%(n)s题", n=detail["item"])))
    elif source == "deterioration" and inst is not None:
        parts.append(f"{_band_label(inst, detail.get('from_band'), zh)} → {_band_label(inst, detail.get('to_band'), zh)}")
    elif source == "concern":
        parts += [str(CATEGORY_LABELS.get(detail.get("category"), "")), str(URGENCY_LABELS.get(detail.get("urgency"), ""))]
    if detail.get("quality") == "readminister":
        parts.append(str(_("作答质量存疑，建议重测或访谈")))
    return [p for p in parts if p]


def _may_see_flags(actor: Any = None) -> bool:
    actor = actor or current_actor()
    return actor.role in QUEUE_ROLES and (has_permission(actor, Permission.FLAG_READ)
                                          or has_permission(actor, Permission.FLAG_READ_RED))


def _attempt(fn: Any, back: str, ok: str) -> Any:
    try:
        fn()
    except (ValidationFailed, InvalidTransition, Conflict, Forbidden) as exc:
        flash(_("未能完成：%(error)s", error=error_text(exc, ERROR_VALUE_LABELS)), "error")
        return redirect(back)
    flash(ok, "info")
    return redirect(back)


def _form(name: str) -> str | None:
    v = request.form.get(name)
    return v.strip() if v and v.strip() else None


# ----------------------------------------------------------------------------- pages


PAGED_LISTS = ("flags", "red", "missed", "escalated", "oversight")


def _page_arg(name: str) -> int:
    try:
        return max(1, int(request.args.get(name, "1")))
    except ValueError:
        return 1


def _page_url(list_name: str, page: int) -> str:
    """This queue page with ``list_name`` at ``page`` and every other list's page kept."""
    args = {k: v for k, v in request.args.items() if k.endswith("_page")}
    args[f"{list_name}_page"] = str(page)
    return url_for("flags.queue", **args)


@bp.get("/flags")
def queue() -> Any:
    """The signed-in role's work queue (monitors are sent to their concerns page)."""
    actor = current_actor()
    if actor.role == Role.CLASS_MONITOR:
        return redirect(url_for("flags.concerns"))
    if not _may_see_flags():
        abort(403)
    ctx = service_ctx()
    pages = {name: _page_arg(f"{name}_page") for name in PAGED_LISTS if f"{name}_page" in request.args}
    q = queue_service.queue_for(ctx, actor, pages=pages)
    for key in ("flags", "red", "missed"):
        if key in q:
            q[key] = queue_service.with_names(ctx, actor, q[key])
    clusters = escalation_service.list_clusters(ctx, actor) if actor.role != Role.HEAD_TEACHER else []
    return _render("flags/queue.html", q=q, clusters=clusters, page_url=_page_url)


@bp.get("/flags/clusters/<cluster_id>")
def cluster(cluster_id: str) -> Any:
    """One cluster alert (the page its inbox, email and WeCom notices link to); 404 out of scope."""
    actor = current_actor()
    ctx = service_ctx()
    alert = escalation_service.get_cluster(ctx, actor, cluster_id)
    alert["flags"] = queue_service.with_names(ctx, actor, alert["flags"])
    return _render("flags/cluster.html", c=alert)


@bp.get("/flags/<flag_id>")
def detail(flag_id: str) -> Any:
    actor = current_actor()
    if not _may_see_flags():
        abort(404)
    ctx = service_ctx()
    view = flag_service.get_flag(ctx, actor, _uuid(flag_id), reveal_reasons=request.args.get("reasons") == "1")
    view = queue_service.with_names(ctx, actor, [view])[0]
    for e in view.get("evidence", []):
        e["label"] = evidence_label(e)
    return _render("flags/detail.html", f=view, can_reveal=actor.role in flag_service.CONCERN_READERS)


@bp.post("/flags/<flag_id>/act")
def act(flag_id: str) -> Any:
    actor = current_actor()
    if not _may_see_flags():
        abort(404)
    fid = _uuid(flag_id)
    action = request.form.get("action", "")
    back = request.form.get("back") == "queue" and url_for("flags.queue") or url_for("flags.detail", flag_id=fid)
    ctx = service_ctx()
    reason = _form("reason")
    if action == "close":
        fn = lambda: flag_service.close(ctx, actor, fid, reason)  # noqa: E731
    elif action in ("review_close", "reject_close"):
        fn = lambda: flag_service.review_close(ctx, actor, fid, action == "review_close", reason)  # noqa: E731
    elif action in ("confirm", "change_level", "dismiss"):
        fn = lambda: flag_service.assess(ctx, actor, fid, action, reason=reason,  # noqa: E731
                                         new_level=_form("new_level"))
    else:
        fn = lambda: flag_service.act(ctx, actor, fid, action, reason=reason)  # noqa: E731
    return _attempt(fn, back, str(_("已完成：%(a)s", a=ACTION_LABELS.get(action, action))))


@bp.get("/concerns")
def concerns() -> Any:
    actor = current_actor()
    if not has_permission(actor, Permission.CONCERN_CREATE):
        abort(403)
    ctx = service_ctx()
    return _render("flags/concerns.html", mine=concern_service.my_concerns(ctx, actor),
                   roster=concern_service.classmates(ctx, actor), staff=actor.role != Role.CLASS_MONITOR)


@bp.post("/concerns")
def submit_concern() -> Any:
    actor = current_actor()
    if not has_permission(actor, Permission.CONCERN_CREATE):
        abort(403)
    ctx = service_ctx()

    def go() -> None:
        concern_service.submit_concern(ctx, actor, student_id=request.form.get("student_id", ""),
                                       category=request.form.get("category", ""),
                                       urgency=request.form.get("urgency", ""), note=request.form.get("note"))

    from mh_platform.core.errors import NotFound

    try:
        ok = (_("已提交，谢谢你。老师会尽快关注。") if actor.role == Role.CLASS_MONITOR
              else _("已提交。该关注已交由本校心理教师（学校层级）确认和跟进。"))
        return _attempt(go, url_for("flags.concerns"), str(ok))
    except NotFound:
        flash(_("未能完成：请从名单中选择同学。"), "error")
        return redirect(url_for("flags.concerns"))


@bp.get("/inbox")
def inbox() -> Any:
    actor = current_actor()
    if actor.user_id is None:
        abort(404)
    return _render("flags/inbox.html", items=notify_service.inbox_for(service_ctx(), actor.user_id))


# ----------------------------------------------------------------------------- home panels


def _flags_panel(ctx, actor) -> PanelData:  # noqa: ANN001
    q = queue_service.queue_for(ctx, actor, per_page=0)
    lines = []
    overdue = q.get("overdue")
    n_overdue = len(overdue) if isinstance(overdue, list) else int(overdue or 0)
    if n_overdue:
        lines.append(PanelLine(str(_l("已超时：%(n)d", n=n_overdue)), level="red"))
    return PanelData(count=int(q.get("waiting", 0)), link=url_for("flags.queue"), lines=lines)


def _concerns_panel(ctx, actor) -> PanelData:  # noqa: ANN001
    mine = concern_service.my_concerns(ctx, actor)
    return PanelData(count=len(mine), link=url_for("flags.concerns"))


register_panel(HomePanel(key="flags.waiting", title=_l("待处理预警"), roles=set(QUEUE_ROLES), loader=_flags_panel,
                         order=10, urgent=True))
register_panel(HomePanel(key="flags.concerns", title=_l("我报告的关注"), roles={Role.CLASS_MONITOR},
                         loader=_concerns_panel, order=10))


# ----------------------------------------------------------------------------- top-bar links (same checks as the views)

register_nav(NavLink(key="inbox", label=_l("消息"), endpoint="flags.inbox", order=10,
                     visible=lambda a: a.user_id is not None and a.role != Role.CLASS_MONITOR))
register_nav(NavLink(key="flags", label=_l("预警工作台"), endpoint="flags.queue", order=20, visible=_may_see_flags))
register_nav(NavLink(key="concerns", label=_l("报告关注"), endpoint="flags.concerns", order=30,
                     visible=lambda a: has_permission(a, Permission.CONCERN_CREATE)))
