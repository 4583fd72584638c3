"""Operational tables: the audit chain, access log, keys and erasure ledger, outbox, inbox, jobs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mh_platform.db.base import Base, new_uuid


class EventLog(Base):
    """Append-only, hash-chained history (core.audit_chain). No plaintext of sensitive fields.

    Writers insert an entry with its ``entry_mac`` only (``services.audit.record``: one INSERT, no
    lock); the sequencer (``services.audit.sequence``, a scheduler job every few seconds) gives
    pending entries — ``seq IS NULL`` — their gapless ``seq`` and chain MAC in ``id`` order."""

    __tablename__ = "event_log"
    __table_args__ = (
        # Writers append to the table and the small pending index only; the sequence index is
        # partial, so it is written by the sequencer in batches, not by every writer.
        sa.Index("ix_event_log_pending", "id", postgresql_where=sa.text("seq IS NULL"),
                 sqlite_where=sa.text("seq IS NULL")),
        sa.Index("uq_event_log_seq", "seq", unique=True, postgresql_where=sa.text("seq IS NOT NULL"),
                 sqlite_where=sa.text("seq IS NOT NULL")),
        {"implicit_returning": False},  # writers never need the new id back: a plain INSERT
    )
    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    seq: Mapped[int | None] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"))
    at: Mapped[datetime]
    actor_user_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid())
    kind: Mapped[str] = mapped_column(sa.String(64))
    object_type: Mapped[str | None] = mapped_column(sa.String(32))
    object_id: Mapped[str | None] = mapped_column(sa.String(64))
    data: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    entry_mac: Mapped[bytes] = mapped_column(sa.LargeBinary(32))
    prev_mac: Mapped[bytes | None] = mapped_column(sa.LargeBinary(32))
    mac: Mapped[bytes | None] = mapped_column(sa.LargeBinary(32))


class AuditAnchor(Base):
    """The newest (seq, mac) of the chain, kept apart so a truncated tail is detected."""

    __tablename__ = "audit_anchor"
    id: Mapped[int] = mapped_column(primary_key=True)
    last_seq: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"))
    last_mac: Mapped[bytes] = mapped_column(sa.LargeBinary(32))


class AccessLog(Base):
    """Every read of sensitive data a person causes: who, role, unit, what, field, why, when."""

    __tablename__ = "access_log"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    at: Mapped[datetime] = mapped_column(index=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid(), index=True)
    role: Mapped[str | None] = mapped_column(sa.String(32))
    unit_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid())
    object_type: Mapped[str] = mapped_column(sa.String(32))
    object_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid())
    student_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid(), index=True)
    field: Mapped[str] = mapped_column(sa.String(64))
    purpose: Mapped[str] = mapped_column(sa.String(64))


class DataKey(Base):
    """A data key wrapped by a master key (crypto.keyring). Student keys are per student
    (crypto-shredding); a student may have several generations, one active."""

    __tablename__ = "data_key"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    purpose: Mapped[str] = mapped_column(sa.String(16))  # student / system / blind_index / audit_mac
    student_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid(), index=True)
    wrapped: Mapped[bytes | None] = mapped_column(sa.LargeBinary)  # None once shredded
    master_key_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime]
    destroyed_at: Mapped[datetime | None]

    __table_args__ = (
        sa.Index("uq_data_key_active_student", "student_id", unique=True,
                 sqlite_where=sa.text("active and student_id is not null"),
                 postgresql_where=sa.text("active and student_id is not null")),
        sa.Index("uq_data_key_active_purpose", "purpose", unique=True,
                 sqlite_where=sa.text("active and student_id is null"),
                 postgresql_where=sa.text("active and student_id is null")),
    )


class ErasureLedger(Base):
    """Students whose key was shredded; replayed after every backup restore."""

    __tablename__ = "erasure_ledger"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    student_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid(), unique=True)
    erased_at: Mapped[datetime]
    erased_by: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid())  # the approver; None when replayed
    reason_code: Mapped[str] = mapped_column(sa.String(32))
    request_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid())  # the approved ErasureRequest


class ErasureRequest(Base):
    """A request to crypto-shred one student, waiting for a second person (two-person rule).

    ``pending`` → ``approved`` (by a different user: the keys are destroyed in that transaction),
    ``cancelled`` (by the requester), ``rejected`` (by another user) or ``expired`` (noticed after
    ``expires_at``). Ids, a reason code and times only: no names, no free text."""

    __tablename__ = "erasure_request"
    __table_args__ = (
        # at most one live request per student (a second requester is told the first one's id)
        sa.Index("uq_erasure_request_pending_student", "student_id", unique=True,
                 sqlite_where=sa.text("status = 'pending'"), postgresql_where=sa.text("status = 'pending'")),
        sa.CheckConstraint("status in ('pending','approved','cancelled','rejected','expired')", name="status"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    student_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("student.id"), index=True)
    reason_code: Mapped[str] = mapped_column(sa.String(32))
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    requested_by: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("app_user.id"))
    requested_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    decided_by: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("app_user.id"))  # approver / canceller
    decided_at: Mapped[datetime | None]


class Outbox(Base):
    """A message to send, written in the same transaction as its cause; sent after commit, once."""

    __tablename__ = "outbox"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    channel: Mapped[str] = mapped_column(sa.String(16))  # inbox / email / wecom
    recipient_user_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("app_user.id"), index=True)
    address: Mapped[str | None] = mapped_column(sa.String(300))
    template: Mapped[str] = mapped_column(sa.String(64))
    params: Mapped[dict[str, Any]] = mapped_column(sa.JSON)  # ids, codes and links only; never names
    dedupe_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")  # pending/sending/sent/failed
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(index=True)
    claimed_by: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(sa.String(300))


class InboxMessage(Base):
    __tablename__ = "inbox_message"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("app_user.id"), index=True)
    template: Mapped[str] = mapped_column(sa.String(64))
    params: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    link: Mapped[str | None] = mapped_column(sa.String(300))
    outbox_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid(), unique=True)
    created_at: Mapped[datetime]
    read_at: Mapped[datetime | None]


class JobRun(Base):
    """Idempotency record: a job step with a given key runs to completion once."""

    __tablename__ = "job_run"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    job_id: Mapped[str] = mapped_column(sa.String(64))
    run_key: Mapped[str] = mapped_column(sa.String(200), unique=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    detail: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)


class SchedulerLease(Base):
    __tablename__ = "scheduler_lease"
    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(sa.String(128))
    expires_at: Mapped[datetime]


class Setting(Base):
    """Small key-value settings (e.g. re-encryption cursor)."""

    __tablename__ = "app_setting"
    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(sa.JSON)


class RateLimitCounter(Base):
    """A fixed-window rate-limit counter shared by every process of the platform
    (``services.rate_limits``; Flask-Limiter's ``database://`` storage). ``key`` is an HMAC of the
    limiter's key, which holds the client's address: no address is stored in clear."""

    __tablename__ = "rate_limit_counter"
    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    count: Mapped[int]
    expires_at: Mapped[float] = mapped_column(sa.Float, index=True)  # seconds since the epoch (time.time())
