"""Org units (city → county → school → grade → class), academic years, institutions."""

from __future__ import annotations

import uuid
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mh_platform.db.base import Base, new_uuid, path_type


class OrgUnit(Base):
    """A node of the org tree. ``path`` is a materialised path of ancestor ids ("/a/b/c/"):
    "everything under X" is one indexed range query on ``path`` (see db.queries.subtree)."""

    __tablename__ = "org_unit"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("org_unit.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(200))
    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    path: Mapped[str] = mapped_column(path_type(), unique=True)
    depth: Mapped[int] = mapped_column(sa.SmallInteger)
    stage: Mapped[str | None] = mapped_column(sa.String(16))  # school: primary/junior/senior/mixed
    grade_level: Mapped[int | None] = mapped_column(sa.SmallInteger)  # grade and class: 1..12
    created_at: Mapped[datetime]

    __table_args__ = (
        sa.CheckConstraint("kind in ('city','county','school','grade','class')", name="kind"),
        sa.CheckConstraint("(parent_id is null) = (kind = 'city')", name="root_is_city"),
    )


class AcademicYear(Base):
    __tablename__ = "academic_year"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(sa.String(20), unique=True)  # e.g. 2026-2027
    starts_on: Mapped[date]
    ends_on: Mapped[date]
    is_current: Mapped[bool] = mapped_column(default=False)


class Institution(Base):
    """A partner mental-health institution (精神卫生专业机构), managed by the city."""

    __tablename__ = "institution"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(sa.String(200))
    code: Mapped[str] = mapped_column(sa.String(64), unique=True)
    city_unit_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("org_unit.id"))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
