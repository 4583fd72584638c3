"""Work queues: what is waiting for each role, scoped by role and unit.

- head teacher: the class's open flags and what to do (no scores, no answers) + their own concerns;
- counsellor: the school's open flags by level and due time, overdue first (acknowledge is one click);
- school leader: the school's red flags, and flags that missed a deadline (yellow reminders);
- county / city officer: flags escalated to them, the overdue ones, by school; plus red flags
  shown for oversight while the school still holds them;
- class monitor: only the status of their own concerns — never a flag.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from mh_platform.core.types import Level, Role, Tier
from mh_platform.db.models import Flag, OrgUnit
from mh_platform.services.concerns import my_concerns
from mh_platform.services.context import Actor, ServiceContext
from mh_platform.services.flags import flag_view
from mh_platform.services.flags_access import escalation_policy, flag_scope

LIMIT = 200  # the head teacher's class list (one class: far fewer open flags than this)
PER_PAGE = 50  # rows per list page on /flags
MAX_PER_PAGE = 200

_LEVEL_ORDER = {Level.RED.value: 0, Level.ORANGE.value: 1, Level.YELLOW.value: 2}


def _overdue_sql(now: Any) -> sa.ColumnElement[bool]:
    """SQL twin of ``flags.overdue`` for open flags: a running deadline has passed."""
    return sa.or_(Flag.ack_due_at <= now, Flag.handle_due_at <= now)


def _order(now: Any) -> tuple[Any, ...]:
    """Overdue first, then red → yellow, then the nearest deadline (the same order on every page)."""
    due = sa.func.coalesce(Flag.ack_due_at, Flag.handle_due_at)
    return (sa.case((_overdue_sql(now), 0), else_=1), sa.case(_LEVEL_ORDER, value=Flag.level, else_=3),
            due.is_(None), due, Flag.opened_at, Flag.id)


def _open_in_scope(ctx: ServiceContext, actor: Actor, now: Any, *extra: Any) -> tuple[Any, ...]:
    return (flag_scope(actor, now, escalation_policy(ctx)), Flag.status != "closed", *extra)


def _flags(ctx: ServiceContext, actor: Actor, *extra: Any, limit: int = LIMIT, offset: int = 0
           ) -> list[dict[str, Any]]:
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        rows = s.scalars(sa.select(Flag).where(*_open_in_scope(ctx, actor, now, *extra))
                         .order_by(*_order(now)).offset(offset).limit(limit)).all()
        return [flag_view(ctx, s, actor, f, now, with_events=False) for f in rows]


def _count(ctx: ServiceContext, actor: Actor, *extra: Any) -> dict[str, int]:
    """``{"total", "overdue", "raised", "red", "orange", "yellow"}`` of the open flags in scope — one
    aggregate query, never counted from a cut list."""
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        n = sa.func.count()
        one = sa.literal(1)
        row = s.execute(sa.select(
            n, sa.func.sum(sa.case((_overdue_sql(now), one), else_=0)),
            sa.func.sum(sa.case((Flag.status == "raised", one), else_=0)),
            *(sa.func.sum(sa.case((Flag.level == lv.value, one), else_=0)) for lv in (Level.RED, Level.ORANGE,
                                                                                     Level.YELLOW)))
            .select_from(Flag).where(*_open_in_scope(ctx, actor, now, *extra))).one()
    vals = [int(v or 0) for v in row]
    return dict(zip(("total", "overdue", "raised", "red", "orange", "yellow"), vals, strict=True))


def _page(ctx: ServiceContext, actor: Actor, *extra: Any, page: int, per_page: int) -> tuple[list[dict[str, Any]],
                                                                                             dict[str, int]]:
    """One page of a list and its counts: ``(views, {"total", "overdue", …, "page", "per_page", "pages"})``.
    A page past the end is clamped to the last one."""
    counts = _count(ctx, actor, *extra)
    pages = max(1, -(-counts["total"] // per_page)) if per_page else 1
    page = min(max(1, page), pages)
    items = _flags(ctx, actor, *extra, limit=per_page, offset=(page - 1) * per_page) if per_page else []
    return items, {**counts, "page": page, "per_page": per_page, "pages": pages}


def _by_school(ctx: ServiceContext, actor: Actor) -> list[dict[str, Any]]:
    """Open flags in scope and the overdue ones, per school: one grouped query over every flag in scope."""
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        n_over = sa.func.sum(sa.case((_overdue_sql(now), sa.literal(1)), else_=0))
        rows = s.execute(sa.select(OrgUnit.id, OrgUnit.name, sa.func.count(), n_over)
                         .select_from(Flag).join(OrgUnit, OrgUnit.id == Flag.school_unit_id)
                         .where(*_open_in_scope(ctx, actor, now))
                         .group_by(OrgUnit.id, OrgUnit.name)).all()
    out = [{"school_id": str(sid), "school": name, "open": int(n), "overdue": int(o or 0)} for sid, name, n, o in rows]
    return sorted(out, key=lambda r: (-r["overdue"], -r["open"], r["school"]))


def queue_for(ctx: ServiceContext, actor: Actor, *, pages: Mapping[str, int] | None = None,
              per_page: int = PER_PAGE) -> dict[str, Any]:
    """The actor's queue; every list holds flag views the actor may see (``flag_view``).

    Lists are paged: ``pages`` names the page wanted per list (``{"oversight": 3}``; default 1), at
    most ``per_page`` rows each (``per_page=0`` loads no rows, for counts only); ``q["paging"][list]``
    carries that list's ``total``, ``page``, ``pages`` and ``per_page``. Every count (``waiting``,
    ``overdue``, ``by_level``, ``by_school``) comes from aggregate queries over everything in scope."""
    role = actor.role
    want = dict(pages or {})
    per_page = max(0, min(int(per_page), MAX_PER_PAGE))
    if role == Role.CLASS_MONITOR:
        return {"role": role.value, "concerns": my_concerns(ctx, actor)}
    if role == Role.HEAD_TEACHER:
        fl = _flags(ctx, actor)
        return {"role": role.value, "flags": fl, "waiting": sum(1 for v in fl if v["actions"]),
                "concerns": my_concerns(ctx, actor)}
    if role == Role.COUNSELLOR:
        fl, pg = _page(ctx, actor, page=want.get("flags", 1), per_page=per_page)
        return {"role": role.value, "flags": fl, "overdue": pg["overdue"],
                "by_level": {lv.value: pg[lv.value] for lv in Level},
                "waiting": pg["raised"], "paging": {"flags": pg}}
    if role == Role.SCHOOL_LEADER:
        red, pr = _page(ctx, actor, Flag.level == Level.RED.value, page=want.get("red", 1), per_page=per_page)
        missed, pm = _page(ctx, actor, Flag.level != Level.RED.value, Flag.escalations > 0,
                           page=want.get("missed", 1), per_page=per_page)
        return {"role": role.value, "red": red, "missed": missed, "waiting": pr["total"] + pm["total"],
                "paging": {"red": pr, "missed": pm}}
    if role in (Role.COUNTY_OFFICER, Role.CITY_OFFICER):
        tiers = (Tier.COUNTY.value, Tier.CITY.value) if role == Role.COUNTY_OFFICER else (Tier.CITY.value,)
        escalated, pe = _page(ctx, actor, Flag.tier.in_(tiers), page=want.get("escalated", 1), per_page=per_page)
        oversight, po = _page(ctx, actor, Flag.tier.not_in(tiers), page=want.get("oversight", 1), per_page=per_page)
        return {"role": role.value, "escalated": escalated, "overdue": pe["overdue"],
                "oversight": oversight, "by_school": _by_school(ctx, actor),
                "waiting": pe["total"], "paging": {"escalated": pe, "oversight": po}}
    return {"role": role.value if role else None}


def waiting_count(ctx: ServiceContext, actor: Actor) -> int:
    """A number for the home page's "waiting for you" panel (0 for roles without a flag queue)."""
    if actor.role not in (Role.HEAD_TEACHER, Role.COUNSELLOR, Role.SCHOOL_LEADER, Role.COUNTY_OFFICER,
                          Role.CITY_OFFICER):
        return 0
    return int(queue_for(ctx, actor, per_page=0).get("waiting", 0))


NAME_ROLES = frozenset({Role.HEAD_TEACHER, Role.COUNSELLOR})


def with_names(ctx: ServiceContext, actor: Actor, views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add the student's name to each view for the head teacher and the counsellor (their own class /
    school, whom they may name) — opened through ``disclosure`` and access-logged. Others keep the
    pseudonym only."""
    import uuid as _uuid

    from mh_platform.db.models import Student
    from mh_platform.services.disclosure import student_names

    if actor.role not in NAME_ROLES or not views:
        return views
    ids = {_uuid.UUID(v["student_id"]) for v in views if v.get("student_id")}
    with ctx.uow() as uow:
        s = uow.session
        studs = s.scalars(sa.select(Student).where(Student.id.in_(ids))).all()
        names = student_names(ctx, s, actor, studs, purpose="flag_queue")
        uow.commit()
    for v in views:
        sid = v.get("student_id")
        if sid:
            v["name"] = names.get(_uuid.UUID(sid))
    return views
