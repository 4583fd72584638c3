"""Campaigns, one-time access codes, responses (answers encrypted, scores queryable)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mh_platform.db.base import Base, Envelope, new_uuid, time_ordered_uuid


class Campaign(Base):
    __tablename__ = "campaign"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    name: Mapped[str] = mapped_column(sa.String(200))
    academic_year_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("academic_year.id"))
    owner_unit_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("org_unit.id"), index=True)
    created_by: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("app_user.id"))
    grades: Mapped[list[Any]] = mapped_column(sa.JSON)  # grade levels 1..12
    battery: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # stage -> [instrument ids]; see services.campaigns
    opens_at: Mapped[datetime]
    closes_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(sa.String(16), default="scheduled")  # scheduled/open/closed/cancelled
    opened_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    created_at: Mapped[datetime]

    __table_args__ = (
        sa.CheckConstraint("status in ('scheduled','open','closed','cancelled')", name="status"),
        sa.CheckConstraint("closes_at > opens_at", name="window"),
    )


class CampaignUnit(Base):
    """A unit (and everything under it) that a campaign screens."""

    __tablename__ = "campaign_unit"
    campaign_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("campaign.id"), primary_key=True)
    unit_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("org_unit.id"), primary_key=True)


class AccessCode(Base):
    """A one-time student code: stored hashed, one campaign, valid until the window closes.

    Indexes: the unique (campaign, student), whose prefix serves every look-up by campaign (code
    slips, completion figures, the import's completion markers); ``student_id`` for a consent
    withdrawal, which revokes the student's codes in every campaign; ``code_hash`` (unique) for a
    typed code. None on ``class_unit_id``: no query filters on it (a class's codes are found
    through its students), and a paper import writes one marker row per student.

    ``sitting_hash``: SHA-256 of the current sitting's random 128-bit token, which the student's
    signed cookie carries next to the row id (``services.responses.Sitting``). Entering the code
    starts a new sitting (a cookie of an earlier sitting, on this or another device, stops working);
    pausing clears it; finishing the battery turns it into the "finished" digest that only opens the
    thank-you page; reprinting codes, revoking them and closing the window clear it. NULL: no sitting.
    """

    __tablename__ = "access_code"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    campaign_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("campaign.id"))  # the unique key's prefix
    student_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("student.id"), index=True)
    code_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32), unique=True)
    class_unit_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("org_unit.id"))
    created_at: Mapped[datetime]
    first_used_at: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    sitting_hash: Mapped[bytes | None] = mapped_column(sa.LargeBinary(32))

    __table_args__ = (sa.UniqueConstraint("campaign_id", "student_id"),)


class Response(Base):
    """One student's answers to one instrument in one campaign, and the engine's result.

    ``answers_enc`` holds the answers exactly as given (JSON {item: value}) under the student's
    data key; the score columns stay queryable for aggregates.

    Where the student was: ``school_unit_id`` keeps the school at screening time (a later transfer
    moves the enrolment, not the response); the class and its path are the enrolment's, read
    through it (nothing reads a class path off a response, so none is copied onto each row — it was
    the widest column, a quarter of a row).

    Indexes — each one is paid on every insert (a paper import writes 100,000s of rows), so only
    those a query uses: the primary key and the unique (student, campaign, instrument). Every
    look-up of responses names the student: with the campaign (autosave, done pages, completion
    figures, the import's "already answered" check) or across campaigns (previous screening for
    deterioration), and the unique key's prefix serves both, so there is no separate index on
    ``student_id``. No query filters on ``campaign_id`` without a student, on ``school_unit_id`` or
    on ``band_id``, so none of them has an index: a report that aggregates responses by campaign,
    school or band adds the index its query plan needs, with it.
    """

    __tablename__ = "response"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=time_ordered_uuid)
    campaign_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("campaign.id"))
    student_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("student.id"))  # the unique key's prefix
    school_unit_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("org_unit.id"))  # at screening time
    instrument_id: Mapped[str] = mapped_column(sa.String(32))
    instrument_version: Mapped[str] = mapped_column(sa.String(32))
    source: Mapped[str] = mapped_column(sa.String(8), default="online")  # online / paper
    status: Mapped[str] = mapped_column(sa.String(16), default="in_progress")  # in_progress/submitted
    answers_enc: Mapped[bytes | None] = mapped_column(Envelope())
    n_answered: Mapped[int] = mapped_column(default=0)
    item_ms: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)  # time per item, not sensitive
    started_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    submitted_at: Mapped[datetime | None]
    # score (reproducible from answers + instrument_version)
    total: Mapped[float | None]
    score_status: Mapped[str | None] = mapped_column(sa.String(16))  # complete / prorated / invalid
    band_id: Mapped[str | None] = mapped_column(sa.String(32))
    concern_level: Mapped[str | None] = mapped_column(sa.String(8))
    subscales: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    critical_fired: Mapped[bool] = mapped_column(default=False)
    critical_unanswered: Mapped[bool] = mapped_column(default=False)
    quality: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    quality_suggestion: Mapped[str | None] = mapped_column(sa.String(32))
    scored_at: Mapped[datetime | None]

    __table_args__ = (sa.UniqueConstraint("student_id", "campaign_id", "instrument_id"),)
