"""Who the actor is and what their units hold: for ``GET /api/v1/me`` and the home pages.

Counts only (units, students, accounts); no identity and no clinical data.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import sqlalchemy as sa

from mh_platform.core.types import Role, UnitKind
from mh_platform.db.models import Enrolment, Institution, OrgUnit, User
from mh_platform.services.context import Actor, ServiceContext
from mh_platform.services.org import under


@dataclass(frozen=True)
class UnitInfo:
    id: uuid.UUID
    kind: str
    name: str
    ancestors: list[str]  # names from the city down to the parent


@dataclass(frozen=True)
class Profile:
    user_id: uuid.UUID | None
    username: str
    display_name: str
    role: str | None
    units: list[UnitInfo]
    institution: dict | None
    below: dict[str, int] = field(default_factory=dict)  # unit kind -> how many under the unit
    students: int = 0  # actively enrolled students under the unit


def _unit_info(s, unit: OrgUnit) -> UnitInfo:
    ids = [uuid.UUID(h) for h in unit.path.strip("/").split("/")][:-1]
    anc = {u.id: u.name for u in s.scalars(sa.select(OrgUnit).where(OrgUnit.id.in_(ids)))} if ids else {}
    return UnitInfo(unit.id, unit.kind, unit.name, [anc[i] for i in ids if i in anc])


def profile(ctx: ServiceContext, actor: Actor) -> Profile:
    with ctx.uow() as uow:
        s = uow.session
        user = s.get(User, actor.user_id) if actor.user_id else None
        units: list[UnitInfo] = []
        below: dict[str, int] = {}
        students = 0
        if actor.unit_id is not None:
            unit = s.get(OrgUnit, actor.unit_id)
            if unit is not None:
                units.append(_unit_info(s, unit))
                for kind, n in s.execute(sa.select(OrgUnit.kind, sa.func.count())
                                         .where(under(OrgUnit.path, unit.path), OrgUnit.id != unit.id)
                                         .group_by(OrgUnit.kind)).all():
                    below[kind] = n
                students = s.scalar(sa.select(sa.func.count()).select_from(Enrolment)
                                    .where(under(Enrolment.unit_path, unit.path), Enrolment.active.is_(True))) or 0
        inst = None
        if actor.institution_id is not None:
            row = s.get(Institution, actor.institution_id)
            if row is not None:
                inst = {"id": row.id, "name": row.name}
        order = [k.value for k in UnitKind]
        return Profile(actor.user_id, actor.username, user.display_name if user else actor.username,
                       actor.role.value if actor.role else None, units, inst,
                       dict(sorted(below.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99)),
                       students)


@dataclass(frozen=True)
class AccountSummary:
    active: int
    disabled: int
    locked: int
    by_role: dict[str, int]


def account_summary(ctx: ServiceContext, actor: Actor) -> AccountSummary:
    """For the sysadmin's home page: accounts by state and role (no clinical data)."""
    from mh_platform.db.models import RoleAssignment

    if actor.role != Role.SYSADMIN:
        return AccountSummary(0, 0, 0, {})
    now = ctx.now()
    with ctx.uow() as uow:
        s = uow.session
        active = s.scalar(sa.select(sa.func.count()).select_from(User).where(User.is_active.is_(True))) or 0
        disabled = s.scalar(sa.select(sa.func.count()).select_from(User).where(User.is_active.is_(False))) or 0
        locked = s.scalar(sa.select(sa.func.count()).select_from(User).where(User.locked_until > now)) or 0
        by_role: dict[str, int] = {role: n for role, n in s.execute(
            sa.select(RoleAssignment.role, sa.func.count()).group_by(RoleAssignment.role)).all()}
        return AccountSummary(active, disabled, locked, by_role)
