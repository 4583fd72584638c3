"""Pages for cases (一生一策), green-channel referrals, break-glass, transfers and partner institutions.

Thin: parse the form, call one service, redirect or render. Scope and role rules live in the
services (404 for out of scope). A refused action on a page (invalid input, a state that moved on)
comes back as a flashed message on the same page; NotFound stays a 404.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from mh_platform.core.errors import Conflict, Forbidden, InvalidTransition, ValidationFailed
from mh_platform.core.types import Role
from mh_platform.services import breakglass as breakglass_service
from mh_platform.services import cases as case_service
from mh_platform.services import institutions as institution_service
from mh_platform.services import referrals as referral_service
from mh_platform.services import transfers as transfer_service
from mh_platform.web.authz import current_actor, service_ctx
from mh_platform.web.errors import error_text
from mh_platform.web.home import HomePanel, PanelData, PanelLine, register_panel
from mh_platform.web.labels import LOCAL_TZ, local_dt
from mh_platform.web.nav import NavLink, register_nav

bp = Blueprint("cases", __name__)


STATE_LABELS = {
    "draft": _l("草稿"), "requested": _l("已申请，待机构受理"), "accepted": _l("机构已受理"),
    "declined": _l("机构已婉拒，待改派"), "scheduled": _l("已预约"), "attended": _l("已就诊"),
    "no_show": _l("未到诊，待改约"), "feedback": _l("机构已反馈"), "school_follow_up": _l("学校跟进中"),
    "closed": _l("已结束"),
}
ACTION_LABELS = {
    "submit": _l("提交转介申请"), "accept": _l("受理"), "decline": _l("婉拒"), "reroute": _l("改派其他机构"),
    "schedule": _l("预约就诊"), "reschedule": _l("改约"), "record_attended": _l("登记已就诊"),
    "record_no_show": _l("登记未到诊"), "record_feedback": _l("填写诊疗反馈"),
    "start_follow_up": _l("开始学校跟进（复学）"), "close": _l("结束转介"), "cancel": _l("撤销转介"),
}
LEVEL_LABELS = {"red": _l("红色（I级）"), "orange": _l("橙色（II级）"), "yellow": _l("黄色（III级）")}
TIER_LABELS = {"class": _l("班级"), "school": _l("学校"), "county": _l("县区"), "city": _l("市")}
CASE_STATUS_LABELS = {"open": _l("进行中"), "transferring": _l("交接中"), "closed": _l("已结案")}
METHOD_LABELS = {"phone": _l("电话"), "in_person": _l("面谈"), "home_visit": _l("家访"), "message": _l("信息"),
                 "meeting": _l("家长会谈")}
DECLINE_LABELS = {"no_capacity": _l("暂无接诊能力"), "out_of_catchment": _l("不在服务范围"),
                  "age_out_of_range": _l("年龄不在接诊范围"), "needs_other_specialty": _l("需其他专科"),
                  "duplicate": _l("重复转介"), "other": _l("其他（请说明）")}
DIAGNOSIS_LABELS = {"none": _l("未见精神障碍"), "adjustment": _l("适应障碍"), "depressive_episode": _l("抑郁发作"),
                    "anxiety": _l("焦虑障碍"), "bipolar": _l("双相障碍"), "psychotic": _l("精神病性障碍"),
                    "trauma_stress": _l("创伤及应激相关障碍"), "neurodevelopmental": _l("神经发育障碍"),
                    "eating": _l("进食障碍"), "substance": _l("物质使用相关"), "other": _l("其他")}
TASK_LABELS = {"follow_up": _l("随访"), "plan_review": _l("计划复查"), "referral": _l("转介待办"),
               "handover_needed": _l("学生已转学，需发起交接"), "handover_incoming": _l("待接收的个案交接")}
TRANSFER_STATUS_LABELS = {"requested": _l("待接收"), "accepted": _l("已接收"), "cancelled": _l("已撤回")}
# display names of the codes an error message names (see web.errors.error_text)
ERROR_VALUE_LABELS = {"action": ACTION_LABELS, "state": STATE_LABELS, "level": LEVEL_LABELS, "tier": TIER_LABELS,
                      "status": TRANSFER_STATUS_LABELS}
OFFICERS = frozenset({Role.COUNTY_OFFICER, Role.CITY_OFFICER})
CASE_ROLES = frozenset({Role.COUNSELLOR, Role.SCHOOL_LEADER}) | OFFICERS


bp.app_template_filter("case_dt")(local_dt)


def _labels() -> dict[str, Any]:
    return {"STATE": STATE_LABELS, "ACTION": ACTION_LABELS, "LEVEL": LEVEL_LABELS, "TIER": TIER_LABELS,
            "CASE_STATUS": CASE_STATUS_LABELS, "METHOD": METHOD_LABELS, "DECLINE": DECLINE_LABELS,
            "DIAGNOSIS": DIAGNOSIS_LABELS, "TASK": TASK_LABELS}


def _render(template: str, **kw: Any) -> Any:
    return render_template(template, L=_labels(), **kw)


def _local_input(name: str, *, required: bool = True) -> datetime | None:
    """A ``datetime-local`` form value (local time) as an aware UTC datetime."""
    raw = (request.form.get(name) or "").strip()
    if not raw:
        if required:
            raise ValidationFailed(_("请填写时间。"), [{"field": name, "error": "required"}])
        return None
    try:
        dt = datetime.fromisoformat(raw)
    except ValueError:
        raise ValidationFailed(_("时间格式不正确。"), [{"field": name, "error": "invalid"}]) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=LOCAL_TZ)
    return dt.astimezone(UTC)


def _form(name: str) -> str | None:
    value = request.form.get(name)
    return value.strip() if value and value.strip() else None


def _attempt(fn: Any, back: str, ok: str) -> Any:
    """Run a service call from a form; flash the outcome and go back to the page."""
    try:
        fn()
    except (ValidationFailed, InvalidTransition, Conflict, Forbidden) as exc:
        flash(_("未能完成：%(error)s", error=error_text(exc, ERROR_VALUE_LABELS)), "error")
        return redirect(back)
    flash(ok, "info")
    return redirect(back)


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except (TypeError, ValueError):
        abort(404)


# ----------------------------------------------------------------------------- home panels


def _tasks_panel(ctx, actor) -> PanelData:  # noqa: ANN001
    tasks = case_service.due_tasks(ctx, actor, ctx.now())
    overdue = sum(1 for t in tasks if t["overdue"])
    lines = [PanelLine(str(_l("已逾期：%(n)d", n=overdue)), level="red" if overdue else None)] if tasks else []
    return PanelData(count=len(tasks), link=url_for("cases.index"), lines=lines)


def _clinician_panel(ctx, actor) -> PanelData:  # noqa: ANN001
    items = referral_service.list_referrals(ctx, actor)
    waiting = [r for r in items if r["actions"]]
    return PanelData(count=len(waiting), link=url_for("cases.referrals"))


def _officer_panel(ctx, actor) -> PanelData:  # noqa: ANN001
    overdue = referral_service.list_referrals(ctx, actor, overdue=True)
    queue = breakglass_service.review_queue(ctx, actor)
    lines = [PanelLine(str(_l("超时转介：%(n)d", n=len(overdue))), link=url_for("cases.referrals", overdue=1)),
             PanelLine(str(_l("待复核的紧急查阅：%(n)d", n=sum(1 for q in queue if not q["own"]))),
                       link=url_for("cases.review_queue"))]
    return PanelData(count=len(overdue), link=url_for("cases.referrals"), lines=lines)


def _leader_panel(ctx, actor) -> PanelData:  # noqa: ANN001
    red = [c for c in case_service.list_cases(ctx, actor, status="open") if c["level"] == "red"]
    return PanelData(count=len(red), link=url_for("cases.index", status="open"))


register_panel(HomePanel(key="cases.leader", title=_l("进行中的红色个案"), roles=frozenset({Role.SCHOOL_LEADER}),
                         loader=_leader_panel, order=25))
register_panel(HomePanel(key="cases.tasks", title=_l("个案待办（一生一策）"), roles=frozenset({Role.COUNSELLOR}),
                         loader=_tasks_panel, order=20, urgent=True))
register_panel(HomePanel(key="cases.clinician", title=_l("待处理的转介"), roles=frozenset({Role.CLINICIAN}),
                         loader=_clinician_panel, order=10, urgent=True))
register_panel(HomePanel(key="cases.oversight", title=_l("转介督办与紧急查阅复核"), roles=OFFICERS,
                         loader=_officer_panel, order=30))


# ----------------------------------------------------------------------------- cases


@bp.get("/cases")
def index() -> Any:
    ctx, actor = service_ctx(), current_actor()
    if actor.role not in CASE_ROLES:
        abort(404)
    status = request.args.get("status") or None
    if status not in (None, *case_service.CASE_STATUSES):
        status = None
    return _render("cases/index.html", cases=case_service.list_cases(ctx, actor, status=status),
                   tasks=case_service.due_tasks(ctx, actor, ctx.now()),
                   openable=case_service.openable_flags(ctx, actor),
                   incoming=transfer_service.incoming_transfers(ctx, actor), status=status)


@bp.post("/cases/open")
def open_case() -> Any:
    ctx, actor = service_ctx(), current_actor()
    flag_id = _form("flag_id") or ""
    try:
        cid = case_service.open_case(ctx, actor, flag_id, summary=_form("summary"))
    except (ValidationFailed, InvalidTransition, Conflict, Forbidden) as exc:
        flash(_("未能建档：%(error)s", error=error_text(exc, ERROR_VALUE_LABELS)), "error")
        return redirect(url_for("cases.index"))
    flash(_("个案已建立。"), "info")
    return redirect(url_for("cases.detail", case_id=cid))


@bp.get("/cases/<case_id>")
def detail(case_id: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    case = case_service.case_detail(ctx, actor, _uuid(case_id))
    insts = institution_service.list_institutions(ctx, actor) if case["view"] == "full" else []
    return _render("cases/detail.html", case=case, institutions=insts,
                   decline_codes=list(DECLINE_LABELS), diagnosis_codes=referral_service.DIAGNOSIS_CATEGORIES,
                   methods=case_service.CONTACT_METHODS)


def _back(case_id: str) -> str:
    return url_for("cases.detail", case_id=case_id)


@bp.post("/cases/<case_id>/plan")
def add_plan(case_id: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    return _attempt(lambda: case_service.add_plan_item(
        ctx, actor, _uuid(case_id), goal=_form("goal") or "", action=_form("action") or "",
        review_at=_local_input("review_at"), owner_user_id=_form("owner_user_id"),
        kind=_form("kind") or "support"), _back(case_id), _("计划条目已添加。"))


@bp.post("/cases/<case_id>/plan/<item_id>")
def update_plan(case_id: str, item_id: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    return _attempt(lambda: case_service.update_plan_item(
        ctx, actor, _uuid(item_id), status=_form("status"), review_at=_local_input("review_at", required=False)),
        _back(case_id), _("计划条目已更新。"))


@bp.post("/cases/<case_id>/follow-ups")
def add_follow_up(case_id: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    return _attempt(lambda: case_service.schedule_follow_up(
        ctx, actor, _uuid(case_id), due_at=_local_input("due_at"), owner_user_id=_form("owner_user_id")),
        _back(case_id), _("随访已安排。"))


@bp.post("/cases/<case_id>/follow-ups/<fu_id>/done")
def done_follow_up(case_id: str, fu_id: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    return _attempt(lambda: case_service.complete_follow_up(ctx, actor, _uuid(fu_id), note=_form("note") or ""),
                    _back(case_id), _("随访已记录。"))


@bp.post("/cases/<case_id>/contacts")
def add_contact(case_id: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    return _attempt(lambda: case_service.log_guardian_contact(
        ctx, actor, _uuid(case_id), method=_form("method") or "", note=_form("note") or "",
        at=_local_input("at", required=False)), _back(case_id), _("家校沟通已记录。"))


@bp.post("/cases/<case_id>/close")
def close_case(case_id: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    return _attempt(lambda: case_service.close_case(ctx, actor, _uuid(case_id), reason=_form("reason") or ""),
                    _back(case_id), _("个案已结案。"))


@bp.post("/cases/<case_id>/referrals")
def create_referral(case_id: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    out: dict[str, Any] = {}

    def go() -> None:
        out["id"] = referral_service.create_referral(ctx, actor, _uuid(case_id),
                                                     institution_id=_form("institution_id"),
                                                     reason=_form("reason") or "")
        if _form("submit_now"):
            referral_service.transition(ctx, actor, out["id"], "submit", consent=_form("consent"),
                                        reason=_form("override_reason"))

    return _attempt(go, _back(case_id), _("转介已创建。"))


@bp.post("/cases/<case_id>/transfer")
def request_transfer(case_id: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    return _attempt(lambda: transfer_service.request_transfer(ctx, actor, _uuid(case_id),
                                                              handover_note=_form("handover_note") or ""),
                    _back(case_id), _("已向新学校发起交接。"))


# ----------------------------------------------------------------------------- referrals


@bp.get("/referrals")
def referrals() -> Any:
    ctx, actor = service_ctx(), current_actor()
    if actor.role not in CASE_ROLES | {Role.CLINICIAN}:
        abort(404)
    state = request.args.get("state") or None
    if state not in (None, *STATE_LABELS):
        state = None
    overdue = request.args.get("overdue") == "1"
    items = referral_service.list_referrals(ctx, actor, state=state, overdue=overdue)
    return _render("cases/referrals.html", items=items, state=state, overdue=overdue)


@bp.get("/referrals/<referral_id>")
def referral(referral_id: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    r = referral_service.referral_detail(ctx, actor, _uuid(referral_id))
    insts = institution_service.list_institutions(ctx, actor) if "reroute" in r["actions"] else []
    return _render("cases/referral.html", r=r, institutions=insts, decline_codes=list(DECLINE_LABELS),
                   diagnosis_codes=referral_service.DIAGNOSIS_CATEGORIES)


@bp.post("/referrals/<referral_id>/<action>")
def referral_action(referral_id: str, action: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    if action not in referral_service.ACTIONS:
        abort(404)
    rid = _uuid(referral_id)
    back = request.form.get("back") or ""
    target = back if back.startswith("/cases/") and "//" not in back else url_for("cases.referral", referral_id=rid)

    def go() -> None:
        reentry = []
        if action == "start_follow_up" and _form("reentry_goal"):
            review = _local_input("reentry_review_at")
            reentry = [{"goal": _form("reentry_goal"), "action": _form("reentry_action") or "",
                        "review_at": review.isoformat() if review else None}]
        appt = _local_input("appointment_at") if action in ("schedule", "reschedule") else None
        referral_service.transition(
            ctx, actor, rid, action, reason=_form("reason"), institution_id=_form("institution_id"),
            appointment_at=appt, consent=_form("consent"), decline_code=_form("decline_code"),
            diagnosis_category=_form("diagnosis_category"), recommendations=_form("recommendations"),
            return_advice=_form("return_advice"), reentry_items=reentry or None)

    return _attempt(go, target, _("已完成：%(a)s", a=ACTION_LABELS.get(action, action)))


# ----------------------------------------------------------------------------- break-glass


@bp.get("/break-glass/<case_id>")
def break_glass_form(case_id: str) -> Any:
    cid = breakglass_service.case_in_reach(service_ctx(), current_actor(), case_id)  # else 404
    return _render("cases/breakglass.html", case_id=cid, hours=service_ctx().settings.breakglass_hours)


@bp.post("/break-glass/<case_id>")
def break_glass_open(case_id: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    cid = _uuid(case_id)
    try:
        breakglass_service.open_break_glass(ctx, actor, cid, reason=_form("reason") or "")
    except (ValidationFailed, InvalidTransition, Forbidden) as exc:
        flash(_("未能启用：%(error)s", error=error_text(exc, ERROR_VALUE_LABELS)), "error")
        return redirect(url_for("cases.break_glass_form", case_id=cid))
    flash(_("紧急查阅已启用（限时），本次使用将由他人复核。"), "info")
    return redirect(url_for("cases.detail", case_id=cid))


@bp.get("/break-glass/review")
def review_queue() -> Any:
    ctx, actor = service_ctx(), current_actor()
    if actor.role not in OFFICERS:
        abort(404)
    return _render("cases/review.html", items=breakglass_service.review_queue(ctx, actor),
                   done=[x for x in breakglass_service.review_queue(ctx, actor, include_closed=True)
                         if x["verdict"]][:50] if request.args.get("all") else [])


@bp.post("/break-glass/review/<bg_id>")
def review(bg_id: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    return _attempt(lambda: breakglass_service.review(ctx, actor, _uuid(bg_id), verdict=_form("verdict") or ""),
                    url_for("cases.review_queue"), _("复核已记录。"))


# ----------------------------------------------------------------------------- transfers


@bp.get("/transfers/<transfer_id>")
def transfer(transfer_id: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    return _render("cases/transfer.html", t=transfer_service.transfer_detail(ctx, actor, _uuid(transfer_id)))


@bp.post("/transfers/<transfer_id>/accept")
def accept_transfer(transfer_id: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    try:
        cid = transfer_service.accept_transfer(ctx, actor, _uuid(transfer_id))
    except (InvalidTransition, Conflict) as exc:
        flash(_("未能接收：%(error)s", error=error_text(exc, ERROR_VALUE_LABELS)), "error")
        return redirect(url_for("cases.index"))
    flash(_("个案已接收。"), "info")
    return redirect(url_for("cases.detail", case_id=cid))


# ----------------------------------------------------------------------------- institutions


@bp.get("/institutions")
def institutions() -> Any:
    ctx, actor = service_ctx(), current_actor()
    if actor.role != Role.CITY_OFFICER:
        abort(404)
    return _render("cases/institutions.html",
                   items=institution_service.list_institutions(ctx, actor, include_inactive=True))


@bp.post("/institutions")
def add_institution() -> Any:
    ctx, actor = service_ctx(), current_actor()
    return _attempt(lambda: institution_service.create_institution(ctx, actor, name=_form("name") or "",
                                                                   code=_form("code") or ""),
                    url_for("cases.institutions"), _("机构已添加。"))


@bp.post("/institutions/<inst_id>/active")
def institution_active(inst_id: str) -> Any:
    ctx, actor = service_ctx(), current_actor()
    active = request.form.get("active") == "1"
    return _attempt(lambda: institution_service.set_active(ctx, actor, _uuid(inst_id), active),
                    url_for("cases.institutions"), _("已更新。"))


# ----------------------------------------------------------------------------- top-bar links (same checks as the views)

register_nav(NavLink(key="cases", label=_l("个案管理"), endpoint="cases.index", order=50,
                     visible=lambda a: a.role in CASE_ROLES))
register_nav(NavLink(key="referrals", label=_l("绿色通道转介"), endpoint="cases.referrals", order=60,
                     visible=lambda a: a.role in CASE_ROLES | {Role.CLINICIAN}))
register_nav(NavLink(key="break-glass-review", label=_l("紧急查阅复核"), endpoint="cases.review_queue", order=70,
                     visible=lambda a: a.role in OFFICERS))
register_nav(NavLink(key="institutions", label=_l("合作机构"), endpoint="cases.institutions", order=80,
                     visible=lambda a: a.role == Role.CITY_OFFICER))
