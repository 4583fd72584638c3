"""Partner mental-health institutions (精神卫生专业机构), managed by city officers.

A clinician account belongs to exactly one institution (its role assignment carries the
institution id) and sees only the referrals addressed to that institution (services.referrals).
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import sqlalchemy as sa

from mh_platform.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from mh_platform.core.i18n import N_
from mh_platform.core.types import Role, UnitKind
from mh_platform.db.models import Institution, OrgUnit, RoleAssignment, User
from mh_platform.services import audit, auth
from mh_platform.services.context import Actor, ServiceContext
from mh_platform.services.ids import id_or_404

CODE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")


def _city_officer(actor: Actor) -> None:
    if actor.role != Role.CITY_OFFICER or actor.unit_id is None:
        raise Forbidden(N_("partner institutions are managed by the city"))


def create_institution(ctx: ServiceContext, actor: Actor, *, name: str, code: str) -> uuid.UUID:
    """A city officer adds a partner institution for their city."""
    _city_officer(actor)
    name = (name or "").strip()
    code = (code or "").strip().lower()
    errors = []
    if not name or len(name) > 200:
        errors.append({"field": "name", "error": "1–200 characters"})
    if not CODE_RE.match(code):
        errors.append({"field": "code", "error": "lower-case letters, digits and '-', 2–63 characters"})
    if errors:
        raise ValidationFailed(N_("invalid institution"), errors)
    with ctx.uow() as uow:
        s = uow.session
        city = s.get(OrgUnit, actor.unit_id)
        if city is None or city.kind != UnitKind.CITY.value:
            raise Forbidden(N_("partner institutions are managed by the city"))
        if s.scalar(sa.select(Institution.id).where(Institution.code == code)):
            raise Conflict(N_("an institution with this code exists"))
        inst = Institution(id=uuid.uuid4(), name=name, code=code, city_unit_id=city.id, active=True,
                           created_at=ctx.now())
        s.add(inst)
        s.flush()
        audit.record(ctx, s, actor, "institution:created", "institution", inst.id, {"code": code})
        uow.commit()
        return inst.id


def _own(s: Any, actor: Actor, institution_id: uuid.UUID | str) -> Institution:
    iid = id_or_404(institution_id, "institution")
    inst = s.get(Institution, iid)
    if inst is None or inst.city_unit_id != actor.unit_id:
        raise NotFound("institution not found")
    return inst


def set_active(ctx: ServiceContext, actor: Actor, institution_id: uuid.UUID | str, active: bool) -> None:
    """Deactivate (or reactivate) an institution: an inactive one receives no new referrals."""
    _city_officer(actor)
    with ctx.uow() as uow:
        s = uow.session
        inst = _own(s, actor, institution_id)
        inst.active = bool(active)
        audit.record(ctx, s, actor, "institution:activated" if active else "institution:deactivated",
                     "institution", inst.id, {})
        uow.commit()


def deactivate(ctx: ServiceContext, actor: Actor, institution_id: uuid.UUID | str) -> None:
    set_active(ctx, actor, institution_id, False)


def add_clinician(ctx: ServiceContext, actor: Actor, institution_id: uuid.UUID | str, *, username: str,
                  password: str, display_name: str = "", email: str | None = None) -> uuid.UUID:
    """A city officer creates a clinician account bound to one of the city's institutions."""
    _city_officer(actor)
    with ctx.uow() as uow:
        inst = _own(uow.session, actor, institution_id)
        if not inst.active:
            raise ValidationFailed(N_("the institution is inactive"), [{"field": "institution_id", "error": "inactive"}])
        iid = inst.id
    return auth.create_user(ctx, actor, username=username, password=password, role=Role.CLINICIAN,
                            institution_id=iid, display_name=display_name or username, email=email)


def list_institutions(ctx: ServiceContext, actor: Actor, *, include_inactive: bool = False) -> list[dict[str, Any]]:
    """Institutions of the actor's city (any signed-in role that refers or oversees); clinicians: their own."""
    with ctx.uow() as uow:
        s = uow.session
        q = sa.select(Institution)
        if actor.role == Role.CLINICIAN:
            q = q.where(Institution.id == actor.institution_id)
        elif actor.unit_path and actor.role in (Role.COUNSELLOR, Role.SCHOOL_LEADER, Role.COUNTY_OFFICER,
                                                Role.CITY_OFFICER):
            city_id = uuid.UUID(actor.unit_path.strip("/").split("/")[0])
            q = q.where(Institution.city_unit_id == city_id)
        else:
            return []
        if not include_inactive:
            q = q.where(Institution.active.is_(True))
        rows = s.scalars(q.order_by(Institution.name)).all()
        rows_n = s.execute(sa.select(RoleAssignment.institution_id, sa.func.count())
                           .join(User, User.id == RoleAssignment.user_id)
                           .where(RoleAssignment.role == Role.CLINICIAN.value, User.is_active.is_(True))
                           .group_by(RoleAssignment.institution_id)).all()
        counts: dict[Any, int] = {k: int(v) for k, v in rows_n}
        return [{"id": str(i.id), "name": i.name, "code": i.code, "active": i.active,
                 "clinicians": int(counts.get(i.id, 0))} for i in rows]


def clinicians_of(s: Any, institution_id: uuid.UUID) -> list[User]:
    """Active clinician accounts of an institution (for notices)."""
    return list(s.scalars(sa.select(User).join(RoleAssignment, RoleAssignment.user_id == User.id)
                          .where(RoleAssignment.role == Role.CLINICIAN.value,
                                 RoleAssignment.institution_id == institution_id, User.is_active.is_(True))
                          .order_by(User.username)))
