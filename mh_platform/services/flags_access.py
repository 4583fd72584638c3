"""Who may see which flag — the chokepoint for flags (``access_flag_by_id``) and its SQL twin.

- class monitors, clinicians and system administrators: never any flag (NotFound / empty).
- a watch-only flag (the risk model's signal alone): only roles holding ``model:read_watch`` (the
  counsellor); risk.md: the watch signal is not shown to head teachers, and the matrix gives it to no one else.
- head teacher: flags of their own class (level, tier, status, what to do — never scores or answers).
- counsellor: every flag of their school, with evidence (the only role that sees clinical detail).
- school leader: red flags of their school, and any flag of their school that missed a deadline.
- county officer: flags of their county that reached the county tier, and red flags at once.
- city officer: flags of the city that reached the city tier, red flags open longer than the
  policy's ``inform_city_after`` (48 h by default), and any flag reported to the city
  (``city_informed_at``: also when the county had no officer to tell, ``flags.oversight``).

Out of scope and missing look the same: ``NotFound``.
"""

from __future__ import annotations

import functools
import pathlib
import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core.authz import Permission, can
from mh_platform.core.errors import NotFound
from mh_platform.core.escalation import EscalationPolicy, default_escalation_policy, parse_escalation_policy
from mh_platform.core.types import Level, Role, Tier
from mh_platform.db.models import Flag
from mh_platform.services.context import Actor, ServiceContext
from mh_platform.services.ids import id_or_404
from mh_platform.services.org import under

FLAG_ROLES = frozenset({Role.HEAD_TEACHER, Role.COUNSELLOR, Role.SCHOOL_LEADER, Role.COUNTY_OFFICER,
                        Role.CITY_OFFICER})
CLINICAL_ROLES = frozenset({Role.COUNSELLOR})


@functools.cache
def _policy_from_file(path: str) -> EscalationPolicy:
    return parse_escalation_policy(pathlib.Path(path).read_text(encoding="utf-8"))


def escalation_policy(ctx: ServiceContext) -> EscalationPolicy:
    """The city's policy file when configured (``MHP_ESCALATION_POLICY_FILE``), else the packaged default."""
    path = getattr(ctx.settings, "escalation_policy_file", "")
    return _policy_from_file(path) if path else default_escalation_policy()


def sees_clinical(actor: Actor) -> bool:
    """Scores, bands, evidence and sealed reasons: the counsellor only."""
    return actor.role in CLINICAL_ROLES


def sees_watch(actor: Actor) -> bool:
    """The risk model's watch signal (a watch-only flag, ``is_watch``, a raise by the model): ``model:read_watch``."""
    return can(actor.role, Permission.MODEL_READ_WATCH)


def _county_levels(p: EscalationPolicy) -> list[str]:
    return [lv.value for lv, lp in p.levels.items() if lp.inform_county_at_once]


def flag_scope(actor: Actor, now: datetime, policy: EscalationPolicy | None = None) -> sa.ColumnElement[bool]:
    """SQL condition: the flags ``actor`` may see (false for everyone else)."""
    if actor.role not in FLAG_ROLES or not actor.unit_path:
        return sa.false()
    cond = _role_scope(actor, now, policy)
    return cond if sees_watch(actor) else sa.and_(cond, Flag.is_watch.is_(False))


def _role_scope(actor: Actor, now: datetime, policy: EscalationPolicy | None) -> sa.ColumnElement[bool]:
    p = policy or default_escalation_policy()
    assert actor.unit_path is not None
    here = under(Flag.unit_path.expression, actor.unit_path)
    if actor.role in (Role.HEAD_TEACHER, Role.COUNSELLOR):
        return here
    if actor.role == Role.SCHOOL_LEADER:
        return sa.and_(here, sa.or_(Flag.level == Level.RED.value, Flag.escalations > 0))
    if actor.role == Role.COUNTY_OFFICER:
        conds: list[sa.ColumnElement[bool]] = [Flag.tier.in_((Tier.COUNTY.value, Tier.CITY.value))]
        levels = _county_levels(p)
        if levels:
            conds.append(Flag.level.in_(levels))
        return sa.and_(here, sa.or_(*conds))
    # city officer
    conds2: list[sa.ColumnElement[bool]] = [Flag.tier == Tier.CITY.value, Flag.city_informed_at.is_not(None)]
    for lv, lp in p.levels.items():
        if lp.inform_city_after is not None:
            conds2.append(sa.and_(Flag.level == lv.value, Flag.opened_at < now - lp.inform_city_after))
    return sa.and_(here, sa.or_(*conds2))


def can_see(actor: Actor, flag: Flag, now: datetime, policy: EscalationPolicy | None = None) -> bool:
    """Python twin of ``flag_scope`` for one loaded flag."""
    p = policy or default_escalation_policy()
    if actor.role not in FLAG_ROLES or not actor.unit_path or not flag.unit_path:
        return False
    if not flag.unit_path.startswith(actor.unit_path):
        return False
    if flag.is_watch and not sees_watch(actor):
        return False
    if actor.role in (Role.HEAD_TEACHER, Role.COUNSELLOR):
        return True
    if actor.role == Role.SCHOOL_LEADER:
        return flag.level == Level.RED.value or flag.escalations > 0
    lp = p.levels[Level(flag.level)]
    if actor.role == Role.COUNTY_OFFICER:
        return flag.tier in (Tier.COUNTY.value, Tier.CITY.value) or lp.inform_county_at_once
    if flag.tier == Tier.CITY.value or flag.city_informed_at is not None:
        return True
    return lp.inform_city_after is not None and now - flag.opened_at > lp.inform_city_after


def access_flag_by_id(s: Session, actor: Actor, flag_id: uuid.UUID | str, now: datetime, *,
                      policy: EscalationPolicy | None = None, for_update: bool = False) -> Flag:
    """The flag if ``actor`` may see it; NotFound for missing and out-of-scope alike."""
    if actor.role not in FLAG_ROLES:
        raise NotFound("flag not found")
    fid = id_or_404(flag_id, "flag")
    q = sa.select(Flag).where(Flag.id == fid)
    if for_update and s.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    flag = s.scalar(q)
    if flag is None:
        raise NotFound("flag not found")
    if not can_see(actor, flag, now, policy):
        raise NotFound("flag not found")
    return flag
