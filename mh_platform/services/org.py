"""Org units: creating the tree, scope queries ("everything under X" is one indexed range query)."""

from __future__ import annotations

import re
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

from mh_platform.core.errors import NotFound, ValidationFailed
from mh_platform.core.types import UNIT_DEPTH, UnitKind
from mh_platform.db.models import OrgUnit

PARENT_KIND = {UnitKind.COUNTY: UnitKind.CITY, UnitKind.SCHOOL: UnitKind.COUNTY,
               UnitKind.GRADE: UnitKind.SCHOOL, UnitKind.CLASS: UnitKind.GRADE}


_DIGITS = re.compile(r"(\d+)")


def unit_sort_key(name: str | None, grade_level: int | None = None) -> tuple:
    """Natural order for units: by grade level (七年级 before 八年级 before 九年级), then by the name with
    its numbers compared as numbers (2班 before 10班). Units without a grade level sort by name alone."""
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in _DIGITS.split(name or "") if p)
    return (grade_level is None, grade_level or 0, parts)


def path_for(parent_path: str | None, unit_id: uuid.UUID) -> str:
    return f"{parent_path or '/'}{unit_id.hex}/"


def under(column: sa.ColumnElement[str] | InstrumentedAttribute[str], path: str) -> sa.ColumnElement[bool]:
    """``column`` lies at or under the unit with ``path``: an index range scan on both databases."""
    return sa.and_(column >= path, column < path[:-1] + "0")  # '/' < '0' < hex digits


def add_unit(session: Session, *, kind: UnitKind, name: str, code: str, parent: OrgUnit | None, now,
             stage: str | None = None, grade_level: int | None = None) -> OrgUnit:
    """Create a unit below ``parent``; the kind must be the one just below the parent's."""
    kind = UnitKind(kind)
    if kind == UnitKind.CITY:
        if parent is not None:
            raise ValidationFailed("a city has no parent")
    elif parent is None or UnitKind(parent.kind) != PARENT_KIND[kind]:
        raise ValidationFailed(f"a {kind} must sit under a {PARENT_KIND[kind]}")
    uid = uuid.uuid4()
    unit = OrgUnit(id=uid, parent_id=parent.id if parent else None, kind=kind.value, name=name, code=code,
                   path=path_for(parent.path if parent else None, uid), depth=UNIT_DEPTH[kind],
                   stage=stage, grade_level=grade_level, created_at=now)
    session.add(unit)
    return unit


def get_unit(session: Session, unit_id: uuid.UUID) -> OrgUnit:
    unit = session.get(OrgUnit, unit_id)
    if unit is None:
        raise NotFound("unit not found")
    return unit


def ancestor_of_kind(session: Session, unit: OrgUnit, kind: UnitKind) -> OrgUnit | None:
    """The ancestor (or self) of ``unit`` with ``kind``, from the materialised path."""
    ids = [uuid.UUID(h) for h in unit.path.strip("/").split("/")]
    depth = UNIT_DEPTH[UnitKind(kind)]
    if depth >= len(ids):
        return None
    return session.get(OrgUnit, ids[depth])


def subtree_units(session: Session, root: OrgUnit, kind: UnitKind | None = None) -> list[OrgUnit]:
    q = sa.select(OrgUnit).where(under(OrgUnit.path, root.path))
    if kind is not None:
        q = q.where(OrgUnit.kind == UnitKind(kind).value)
    return list(session.scalars(q.order_by(OrgUnit.path)))
