"""Break-glass (紧急查阅): time-limited access of a county or city officer to one red case.

An officer states a reason (sealed) and gets read access to one RED case under their unit for
``settings.breakglass_hours`` (default 4 h). The case's counsellor and the city officers are told at
once (no names). Every use lands in a review queue that a SECOND officer — never the user — closes
as justified or unjustified. The reason is shown to the reviewer through the disclosure service
(purpose ``breakglass_review``). Clinical feedback of referrals stays out of reach even then.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from mh_platform.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from mh_platform.core.i18n import N_
from mh_platform.core.types import Role, UnitKind
from mh_platform.db.models import BreakGlass, Case, OrgUnit, Student, User
from mh_platform.services import audit, disclosure, notify
from mh_platform.services.cases import (
    OFFICER_ROLES,
    _in,
    _text,
    active_break_glass,
    ancestor_id,
    case_counsellors,
    notify_users,
    rowcount,
    scoped,
    seal,
)
from mh_platform.services.context import Actor, ServiceContext
from mh_platform.services.ids import id_or_404

VERDICTS = ("justified", "unjustified")


def _hours(ctx: ServiceContext) -> int:
    hours = getattr(ctx.settings, "breakglass_hours", None) or ctx.settings.extra.get("breakglass_hours", 4)
    return max(1, int(hours))


def case_in_reach(ctx: ServiceContext, actor: Actor, case_id: uuid.UUID | str) -> uuid.UUID:
    """The case id, if it is a case the officer could open by break-glass (under their unit); else
    NotFound, as for a missing one — what the request form checks before it is shown."""
    if actor.role not in OFFICER_ROLES or not actor.unit_path:
        raise NotFound("case not found")
    cid = id_or_404(case_id, "case")
    with ctx.uow(read_only=True) as uow:
        case = uow.session.get(Case, cid)
        if case is None or not _in(actor, case.unit_path):
            raise NotFound("case not found")
    return cid


def open_break_glass(ctx: ServiceContext, actor: Actor, case_id: uuid.UUID | str, *, reason: str) -> dict[str, Any]:
    """Grant the officer time-limited access to one red case under their unit; returns id and expiry."""
    if actor.role not in OFFICER_ROLES or not actor.unit_path:
        raise Forbidden(N_("only county and city officers may use break-glass access"))
    reason = _text(reason, "reason", required=True)
    if len(reason) < 10:
        raise ValidationFailed(N_("state the reason in a sentence"), [{"field": "reason", "error": "at least 10 characters"}])
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        cid = id_or_404(case_id, "case")
        case = s.get(Case, cid)
        if case is None or not _in(actor, case.unit_path):
            raise NotFound("case not found")
        if case.level != "red":
            raise Forbidden(N_("break-glass access is only for red cases"))
        if case.status == "closed":
            raise InvalidTransition(N_("the case is closed"))
        if active_break_glass(s, actor, case.id, now) is not None:
            raise InvalidTransition(N_("you already have active access to this case"))
        bg = BreakGlass(id=uuid.uuid4(), user_id=actor.user_id, case_id=case.id, opened_at=now,
                        expires_at=now + timedelta(hours=_hours(ctx)), unit_path=case.unit_path)
        seal(ctx, s, bg, "reason_enc", reason, case.student_id, now)
        s.add(bg)
        s.flush()
        school = s.get(OrgUnit, case.school_unit_id)
        unit_name = school.name if school else ""
        ids = notify_users(s, case_counsellors(s, case), template="breakglass_opened", unit_name=unit_name,
                           link=f"/cases/{case.id}", dedupe=f"breakglass:{bg.id}", now=now)
        city_id = ancestor_id(case.unit_path, UnitKind.CITY)
        city_officers = [u for u in notify.users_with_role(s, Role.CITY_OFFICER, city_id) if u.id != actor.user_id] \
            if city_id is not None else []
        ids += notify_users(s, city_officers, template="breakglass_opened", unit_name=unit_name,
                            link="/break-glass/review", dedupe=f"breakglass:{bg.id}", now=now)
        audit.record(ctx, s, actor, "breakglass:opened", "break_glass", bg.id,
                     {"case_id": case.id, "hours": _hours(ctx), "role": actor.role.value})
        uow.after_commit(lambda: notify.send_soon(ctx, ids))
        uow.commit()
        return {"id": str(bg.id), "case_id": str(case.id), "expires_at": bg.expires_at.isoformat()}


def review_queue(ctx: ServiceContext, actor: Actor, *, include_closed: bool = False) -> list[dict[str, Any]]:
    """Break-glass uses under the officer's unit waiting for a second person's review (reasons shown)."""
    if actor.role not in OFFICER_ROLES or not actor.unit_path:
        return []
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        q = (sa.select(BreakGlass, Case, User.username, Student.pseudonym)
             .join(Case, Case.id == BreakGlass.case_id).join(User, User.id == BreakGlass.user_id)
             .join(Student, Student.id == Case.student_id)
             .where(scoped(BreakGlass.unit_path, actor.unit_path)))
        if not include_closed:
            q = q.where(BreakGlass.reviewed_at.is_(None))
        out = []
        for bg, case, username, pseudonym in s.execute(q.order_by(BreakGlass.opened_at)).all():
            mine = bg.user_id == actor.user_id
            out.append({"id": str(bg.id), "case_id": str(case.id), "pseudonym": pseudonym, "user": username,
                        "opened_at": bg.opened_at.isoformat(), "expires_at": bg.expires_at.isoformat(),
                        "active": bg.expires_at > now, "own": mine, "verdict": bg.verdict,
                        "reviewed_at": bg.reviewed_at.isoformat() if bg.reviewed_at else None,
                        "reason": disclosure.reveal(ctx, s, actor, bg, "reason_enc", student_id=case.student_id,
                                                    purpose="breakglass_review")})
        uow.commit()
        return out


def my_grants(ctx: ServiceContext, actor: Actor) -> list[dict[str, Any]]:
    """The officer's own active grants (case ids and expiry; no text)."""
    if actor.role not in OFFICER_ROLES or actor.user_id is None:
        return []
    with ctx.uow() as uow:
        now = ctx.now()
        rows = uow.session.scalars(sa.select(BreakGlass).where(BreakGlass.user_id == actor.user_id,
                                                               BreakGlass.expires_at > now)
                                   .order_by(BreakGlass.expires_at)).all()
        return [{"id": str(b.id), "case_id": str(b.case_id), "expires_at": b.expires_at.isoformat()} for b in rows]


def review(ctx: ServiceContext, actor: Actor, break_glass_id: uuid.UUID | str, *, verdict: str) -> None:
    """A second officer closes a break-glass use as justified or unjustified (never the user)."""
    if verdict not in VERDICTS:
        raise ValidationFailed(N_("choose a verdict"), [{"field": "verdict", "error": f"one of {VERDICTS}"}])
    if actor.role not in OFFICER_ROLES or not actor.unit_path:
        raise Forbidden(N_("only county and city officers review break-glass use"))
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        bid = id_or_404(break_glass_id)
        bg = s.get(BreakGlass, bid)
        if bg is None or not _in(actor, bg.unit_path):
            raise NotFound("not found")
        if bg.user_id == actor.user_id:
            raise Forbidden(N_("a second person must review a break-glass use"))
        if bg.reviewed_at is not None:
            raise InvalidTransition(N_("already reviewed"))
        res = s.execute(sa.update(BreakGlass).where(BreakGlass.id == bg.id, BreakGlass.reviewed_at.is_(None))
                        .values(reviewed_by=actor.user_id, reviewed_at=now, verdict=verdict)
                        .execution_options(synchronize_session=False))
        if rowcount(res) != 1:
            raise InvalidTransition(N_("already reviewed"))
        audit.record(ctx, s, actor, "breakglass:reviewed", "break_glass", bg.id,
                     {"verdict": verdict, "user_id": bg.user_id, "case_id": bg.case_id})
        uow.commit()
