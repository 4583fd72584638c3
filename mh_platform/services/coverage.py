"""Units missing a role the escalation network relies on: a class without a head teacher, a school
without a counsellor, a county without an officer, a city without an officer.

The required role per unit kind is the policy's acting role per tier (``tier_roles`` in the
escalation policy), so a city that changes who acts at a tier changes this report with it. A flag in
such a unit is handed up to the next tier with someone (``flags.reach``) and each gap met is audited
(``notify:no_recipient``); this report is the administrator's list to fill. Ids, codes, kinds and unit
names only.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mh_platform.core import authz
from mh_platform.core.errors import Forbidden
from mh_platform.core.types import Role, Tier, UnitKind
from mh_platform.db.models import OrgUnit, RoleAssignment, User
from mh_platform.services.context import Actor, ServiceContext
from mh_platform.services.flags_access import escalation_policy
from mh_platform.services.org import under

TIER_UNIT_KIND: dict[Tier, UnitKind] = {Tier.CLASS: UnitKind.CLASS, Tier.SCHOOL: UnitKind.SCHOOL,
                                        Tier.COUNTY: UnitKind.COUNTY, Tier.CITY: UnitKind.CITY}


def required_roles(ctx: ServiceContext) -> dict[UnitKind, Role]:
    """The role each kind of unit needs: the escalation policy's acting role at that unit's tier."""
    return {TIER_UNIT_KIND[t]: r for t, r in escalation_policy(ctx).tier_roles.items()}


def units_missing_roles(ctx: ServiceContext, actor: Actor) -> list[dict[str, Any]]:
    """Every unit (under the actor's unit, if they have one) with no active user in its required role,
    ordered by the tree: ``[{"unit_id", "unit", "kind", "code", "missing_role"}]``. For administrators
    (``user:admin``) and the command line (an actor without a role)."""
    if actor.role is not None and not authz.can(Role(actor.role), authz.Permission.USER_ADMIN):
        raise Forbidden("only an administrator lists the units missing a role")
    need = required_roles(ctx)
    with ctx.uow(read_only=True) as uow:
        s = uow.session
        out: list[dict[str, Any]] = []
        for kind, role in need.items():
            staffed = (sa.select(RoleAssignment.id).join(User, User.id == RoleAssignment.user_id)
                       .where(RoleAssignment.unit_id == OrgUnit.id, RoleAssignment.role == role.value,
                              User.is_active.is_(True)))
            q = sa.select(OrgUnit).where(OrgUnit.kind == kind.value, ~staffed.exists())
            if actor.unit_path:
                q = q.where(under(OrgUnit.path, actor.unit_path))
            for u in s.scalars(q):
                out.append({"unit_id": str(u.id), "unit": u.name, "kind": u.kind, "code": u.code,
                            "missing_role": role.value, "_path": u.path})
        out.sort(key=lambda r: r["_path"])
        for r in out:
            del r["_path"]
        return out
