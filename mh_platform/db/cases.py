"""Cases (一生一策), plans, follow-ups, guardian contacts; green-channel referrals; break-glass."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mh_platform.db.base import Base, Envelope, new_uuid, path_type


class Case(Base):
    __tablename__ = "case_file"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    student_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("student.id"), index=True)
    flag_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("flag.id"), index=True)
    school_unit_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("org_unit.id"), index=True)
    unit_path: Mapped[str] = mapped_column(path_type(), index=True)
    counsellor_user_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("app_user.id"), index=True)
    level: Mapped[str] = mapped_column(sa.String(8))
    status: Mapped[str] = mapped_column(sa.String(16), default="open")  # open / transferring / closed
    summary_enc: Mapped[bytes | None] = mapped_column(Envelope())
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    leader_informed_at: Mapped[datetime | None]
    closed_by: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("app_user.id"))
    close_reason_enc: Mapped[bytes | None] = mapped_column(Envelope())
    version: Mapped[int] = mapped_column(default=1)

    __table_args__ = (
        sa.Index("uq_case_one_open_per_student", "student_id", unique=True,
                 sqlite_where=sa.text("status != 'closed'"), postgresql_where=sa.text("status != 'closed'")),
    )


class PlanItem(Base):
    """One line of the support plan: a goal, an action, an owner and a review date."""

    __tablename__ = "plan_item"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    case_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("case_file.id"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16), default="support")  # support / reentry
    goal_enc: Mapped[bytes] = mapped_column(Envelope())
    action_enc: Mapped[bytes] = mapped_column(Envelope())
    owner_user_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("app_user.id"))
    review_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    created_at: Mapped[datetime]


class FollowUp(Base):
    __tablename__ = "follow_up"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    case_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("case_file.id"), index=True)
    owner_user_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("app_user.id"), index=True)
    due_at: Mapped[datetime] = mapped_column(index=True)
    done_at: Mapped[datetime | None]
    note_enc: Mapped[bytes | None] = mapped_column(Envelope())
    created_at: Mapped[datetime]


class GuardianContact(Base):
    """A home–school contact (家校沟通)."""

    __tablename__ = "guardian_contact"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    case_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("case_file.id"), index=True)
    by_user_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("app_user.id"))
    method: Mapped[str] = mapped_column(sa.String(16))
    note_enc: Mapped[bytes | None] = mapped_column(Envelope())
    at: Mapped[datetime]


class Referral(Base):
    """A green-channel referral (心理危机转介绿色通道); states per core.referrals."""

    __tablename__ = "referral"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    case_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("case_file.id"), index=True)
    student_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("student.id"), index=True)
    institution_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("institution.id"), index=True)
    school_unit_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("org_unit.id"), index=True)
    unit_path: Mapped[str] = mapped_column(path_type(), index=True)
    level: Mapped[str] = mapped_column(sa.String(8))
    state: Mapped[str] = mapped_column(sa.String(20))
    tier: Mapped[str] = mapped_column(sa.String(8), default="school")
    consent_basis: Mapped[str | None] = mapped_column(sa.String(16))  # guardian / override
    reason_enc: Mapped[bytes | None] = mapped_column(Envelope())
    override_reason_enc: Mapped[bytes | None] = mapped_column(Envelope())
    decline_reason: Mapped[str | None] = mapped_column(sa.String(32))
    appointment_at: Mapped[datetime | None]
    feedback_enc: Mapped[bytes | None] = mapped_column(Envelope())
    diagnosis_enc: Mapped[bytes | None] = mapped_column(Envelope())  # the diagnosis category code, sealed
    return_advice_enc: Mapped[bytes | None] = mapped_column(Envelope())
    diagnosis_category: Mapped[str | None] = mapped_column(sa.String(32))
    state_entered_at: Mapped[datetime]
    due_at: Mapped[datetime | None] = mapped_column(index=True)
    escalations: Mapped[int] = mapped_column(default=0)
    requested_at: Mapped[datetime | None]  # the FIRST request (first-appointment target runs from it)
    attended_once: Mapped[bool] = mapped_column(default=False)
    first_appointment_escalated: Mapped[bool] = mapped_column(default=False)
    closed_at: Mapped[datetime | None]
    created_by: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("app_user.id"))
    created_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(default=1)


class ReferralEvent(Base):
    __tablename__ = "referral_event"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    referral_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("referral.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(sa.String(20))
    to_state: Mapped[str] = mapped_column(sa.String(20))
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("app_user.id"))
    institution_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("institution.id"))
    detail: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    note_enc: Mapped[bytes | None] = mapped_column(Envelope())
    at: Mapped[datetime]
    seq: Mapped[int] = mapped_column(default=0)  # the referral's version after this change: orders events


class BreakGlass(Base):
    """Time-limited out-of-scope access to one red case, reviewed afterwards by a second person."""

    __tablename__ = "break_glass"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("app_user.id"), index=True)
    case_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("case_file.id"), index=True)
    reason_enc: Mapped[bytes] = mapped_column(Envelope())
    opened_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    reviewed_by: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("app_user.id"))
    reviewed_at: Mapped[datetime | None]
    verdict: Mapped[str | None] = mapped_column(sa.String(16))  # justified / unjustified
    unit_path: Mapped[str | None] = mapped_column(path_type(), index=True)  # the case's school path at opening


class Transfer(Base):
    """A counsellor-to-counsellor handover when a student with an open case changes school."""

    __tablename__ = "case_transfer"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    case_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("case_file.id"), index=True)
    from_school_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("org_unit.id"))
    to_school_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("org_unit.id"))
    requested_by: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("app_user.id"))
    accepted_by: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("app_user.id"))
    handover_enc: Mapped[bytes | None] = mapped_column(Envelope())
    requested_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    status: Mapped[str] = mapped_column(sa.String(16), default="requested")  # requested / accepted / cancelled
