"""Work queues: what is waiting for each role, scoped by role and unit.

- head teacher: the class's open flags and what to do (no scores, no answers) + their own concerns;
- counsellor: the school's open flags by level and due time, overdue first (acknowledge is one click);
- school leader: the school's red flags, and flags that missed a deadline (yellow reminders);
- county / city officer: flags escalated to them, the overdue ones, by school; plus red flags
  shown for oversight while the school still holds them;
- class monitor: only the status of their own concerns — never a flag.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import sqlalchemy as sa

from mh_platform.core.types import LEVEL_RANK, Level, Role, Tier
from mh_platform.db.models import Flag
from mh_platform.services.concerns import my_concerns
from mh_platform.services.context import Actor, ServiceContext
from mh_platform.services.flags import flag_view
from mh_platform.services.flags_access import escalation_policy, flag_scope

LIMIT = 200


def _sort_key(v: dict[str, Any]) -> tuple:
    due = v["ack_due_at"] or v["handle_due_at"] or "9999"
    return (not v["overdue"], -LEVEL_RANK[Level(v["level"])], due)


def _flags(ctx: ServiceContext, actor: Actor, *extra: Any, limit: int = LIMIT) -> list[dict[str, Any]]:
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        due = sa.func.coalesce(Flag.ack_due_at, Flag.handle_due_at)
        rows = s.scalars(sa.select(Flag).where(flag_scope(actor, now, escalation_policy(ctx)), Flag.status != "closed",
                                               *extra)
                         .order_by(due.is_(None), due, Flag.opened_at).limit(limit)).all()
        views = [flag_view(ctx, s, actor, f, now, with_events=False) for f in rows]
    return sorted(views, key=_sort_key)


def _by_school(views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    counts: Counter[tuple[str, str]] = Counter()
    overdue: Counter[tuple[str, str]] = Counter()
    for v in views:
        key = (v["school"]["id"], v["school"]["name"]) if v["school"] else ("", "")
        counts[key] += 1
        overdue[key] += int(v["overdue"])
    return [{"school_id": k[0], "school": k[1], "open": n, "overdue": overdue[k]}
            for k, n in sorted(counts.items(), key=lambda kv: (-overdue[kv[0]], -kv[1], kv[0][1]))]


def queue_for(ctx: ServiceContext, actor: Actor) -> dict[str, Any]:
    """The actor's queue; every list holds flag views the actor may see (``flag_view``)."""
    role = actor.role
    if role == Role.CLASS_MONITOR:
        return {"role": role.value, "concerns": my_concerns(ctx, actor)}
    if role == Role.HEAD_TEACHER:
        fl = _flags(ctx, actor)
        return {"role": role.value, "flags": fl, "waiting": sum(1 for v in fl if v["actions"]),
                "concerns": my_concerns(ctx, actor)}
    if role == Role.COUNSELLOR:
        fl = _flags(ctx, actor)
        by_level = Counter(v["level"] for v in fl)
        return {"role": role.value, "flags": fl, "overdue": sum(v["overdue"] for v in fl),
                "by_level": {lv.value: by_level.get(lv.value, 0) for lv in Level},
                "waiting": sum(1 for v in fl if v["status"] == "raised")}
    if role == Role.SCHOOL_LEADER:
        red = _flags(ctx, actor, Flag.level == Level.RED.value)
        missed = _flags(ctx, actor, Flag.level != Level.RED.value, Flag.escalations > 0)
        return {"role": role.value, "red": red, "missed": missed, "waiting": len(red) + len(missed)}
    if role in (Role.COUNTY_OFFICER, Role.CITY_OFFICER):
        tiers = (Tier.COUNTY.value, Tier.CITY.value) if role == Role.COUNTY_OFFICER else (Tier.CITY.value,)
        escalated = _flags(ctx, actor, Flag.tier.in_(tiers))
        oversight = _flags(ctx, actor, Flag.tier.not_in(tiers))
        return {"role": role.value, "escalated": escalated, "overdue": [v for v in escalated if v["overdue"]],
                "oversight": oversight, "by_school": _by_school(escalated + oversight),
                "waiting": len(escalated)}
    return {"role": role.value if role else None}


def waiting_count(ctx: ServiceContext, actor: Actor) -> int:
    """A number for the home page's "waiting for you" panel (0 for roles without a flag queue)."""
    if actor.role not in (Role.HEAD_TEACHER, Role.COUNSELLOR, Role.SCHOOL_LEADER, Role.COUNTY_OFFICER,
                          Role.CITY_OFFICER):
        return 0
    return int(queue_for(ctx, actor).get("waiting", 0))


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
