"""Risk flags, their evidence and events; concerns from monitors and teachers; cluster alerts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mh_platform.db.base import Base, Envelope, new_uuid, path_type

OPEN_FLAG = "status != 'closed'"


def _as_inserted(column: str) -> Any:
    """A column default: the row's own ``column`` as inserted (a flag opens where it is placed)."""
    return lambda context: context.get_current_parameters()[column]


class Flag(Base):
    """A risk episode for one student. One open flag per student (partial unique index)."""

    __tablename__ = "flag"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    student_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("student.id"), index=True)
    school_unit_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("org_unit.id"), index=True)
    class_unit_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("org_unit.id"), index=True)
    unit_path: Mapped[str] = mapped_column(path_type(), index=True)  # the current class's path
    # the class and school a cluster alert counts the flag in: where it was opened, or where it was when
    # it became red/orange — ``flags.follow_enrolment`` re-points them when the flag follows its student
    # while below the cluster levels (yellow), and keeps them once it is red or orange
    opened_class_unit_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("org_unit.id"),
                                                            default=_as_inserted("class_unit_id"))
    opened_school_unit_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("org_unit.id"),
                                                             default=_as_inserted("school_unit_id"))
    level: Mapped[str] = mapped_column(sa.String(8))
    tier: Mapped[str] = mapped_column(sa.String(8))
    status: Mapped[str] = mapped_column(sa.String(16))
    is_watch: Mapped[bool] = mapped_column(default=False)  # model-only yellow watch
    opened_at: Mapped[datetime]
    tier_entered_at: Mapped[datetime]
    ack_due_at: Mapped[datetime | None]
    handle_due_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    handled_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    escalations: Mapped[int] = mapped_column(default=0)
    city_informed_at: Mapped[datetime | None]
    county_informed_at: Mapped[datetime | None]
    owner_user_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("app_user.id"))
    version: Mapped[int] = mapped_column(default=1)  # bumped by every change; claims compare it

    __table_args__ = (
        sa.Index("uq_flag_one_open_per_student", "student_id", unique=True,
                 sqlite_where=sa.text(OPEN_FLAG), postgresql_where=sa.text(OPEN_FLAG)),
        sa.Index("ix_flag_open_due", "status", "ack_due_at", "handle_due_at"),
        # the sweep's two range scans: open flags by each running deadline
        sa.Index("ix_flag_open_ack_due", "ack_due_at",
                 sqlite_where=sa.text(OPEN_FLAG), postgresql_where=sa.text(OPEN_FLAG)),
        sa.Index("ix_flag_open_handle_due", "handle_due_at",
                 sqlite_where=sa.text(OPEN_FLAG), postgresql_where=sa.text(OPEN_FLAG)),
        # cluster checks: recent red/orange flags per class and school they were opened in
        sa.Index("ix_flag_class_opened", "opened_class_unit_id", "opened_at"),
        sa.Index("ix_flag_school_opened", "opened_school_unit_id", "opened_at"),
        sa.CheckConstraint("level in ('red','orange','yellow')", name="level"),
        sa.CheckConstraint("tier in ('class','school','county','city')", name="tier"),
    )


class FlagEvidence(Base):
    __tablename__ = "flag_evidence"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    flag_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("flag.id"), index=True)
    source: Mapped[str] = mapped_column(sa.String(32))  # band/critical/critical_unanswered/concern/deterioration/model
    level: Mapped[str] = mapped_column(sa.String(8))
    reason_code: Mapped[str] = mapped_column(sa.String(64))
    response_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("response.id"))
    concern_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("concern.id"))
    detail: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)  # codes and numbers only, never text
    created_at: Mapped[datetime]


class FlagEvent(Base):
    """Every change of a flag: status, tier or level. Reasons are encrypted.

    ``seq`` is the flag's ``version`` after the change: the flag's events in the order of its changes
    (several changes in one transaction share their ``at``), one event per version."""

    __tablename__ = "flag_event"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    flag_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("flag.id"))
    kind: Mapped[str] = mapped_column(sa.String(32))
    from_status: Mapped[str | None] = mapped_column(sa.String(16))
    to_status: Mapped[str | None] = mapped_column(sa.String(16))
    from_tier: Mapped[str | None] = mapped_column(sa.String(8))
    to_tier: Mapped[str | None] = mapped_column(sa.String(8))
    from_level: Mapped[str | None] = mapped_column(sa.String(8))
    to_level: Mapped[str | None] = mapped_column(sa.String(8))
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("app_user.id"))
    reason_code: Mapped[str | None] = mapped_column(sa.String(64))
    reason_enc: Mapped[bytes | None] = mapped_column(Envelope())
    at: Mapped[datetime]
    seq: Mapped[int]

    __table_args__ = (sa.Index("uq_flag_event_flag_seq", "flag_id", "seq", unique=True),)


class Concern(Base):
    """Something a class monitor or teacher saw. The reporter sees only its status afterwards."""

    __tablename__ = "concern"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    student_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("student.id"), index=True)
    reporter_user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("app_user.id"), index=True)
    reporter_role: Mapped[str] = mapped_column(sa.String(32))
    category: Mapped[str] = mapped_column(sa.String(32))
    urgency: Mapped[str] = mapped_column(sa.String(16))  # immediate / soon / routine
    note_enc: Mapped[bytes | None] = mapped_column(Envelope())
    status: Mapped[str] = mapped_column(sa.String(16), default="received")
    flag_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("flag.id"), index=True)
    unit_path: Mapped[str] = mapped_column(path_type(), index=True)
    created_at: Mapped[datetime]

    __table_args__ = (sa.CheckConstraint("urgency in ('immediate','soon','routine')", name="urgency"),)


class ClusterAlert(Base):
    __tablename__ = "cluster_alert"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    unit_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("org_unit.id"), index=True)
    scope: Mapped[str] = mapped_column(sa.String(8))  # class / school
    window_start: Mapped[datetime]
    flag_count: Mapped[int]
    suggestion: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]
    dedupe_key: Mapped[str] = mapped_column(sa.String(128), unique=True)
