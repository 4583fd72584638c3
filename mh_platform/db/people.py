"""Students, enrolments, guardians, consent; users, role assignments, API tokens.

Identity fields are stored as encryption envelopes (``*_enc``) with HMAC blind indexes
(``*_bidx``) for exact look-ups; they are written and read only through services.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from mh_platform.db.base import Base, Envelope, new_uuid, path_type


class Student(Base):
    __tablename__ = "student"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    pseudonym: Mapped[str] = mapped_column(sa.String(32), unique=True)  # for aggregates and exports
    name_enc: Mapped[bytes] = mapped_column(Envelope())
    id_number_enc: Mapped[bytes | None] = mapped_column(Envelope())
    id_number_bidx: Mapped[bytes | None] = mapped_column(sa.LargeBinary(32), index=True)
    student_number_enc: Mapped[bytes | None] = mapped_column(Envelope())
    student_number_bidx: Mapped[bytes | None] = mapped_column(sa.LargeBinary(32), unique=True)
    sex: Mapped[str] = mapped_column(sa.String(1))  # F / M
    birth_year: Mapped[int | None] = mapped_column(sa.SmallInteger)
    created_at: Mapped[datetime]
    erased_at: Mapped[datetime | None]

    __table_args__ = (sa.CheckConstraint("sex in ('F','M')", name="sex"),)


class Enrolment(Base):
    """A student's class in one academic year. Moving adds a new row; old rows are kept."""

    __tablename__ = "enrolment"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    student_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("student.id"), index=True)
    academic_year_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("academic_year.id"))
    class_unit_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("org_unit.id"), index=True)
    school_unit_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("org_unit.id"), index=True)
    unit_path: Mapped[str] = mapped_column(path_type(), index=True)  # the class's path, for scope
    grade_level: Mapped[int] = mapped_column(sa.SmallInteger)
    active: Mapped[bool] = mapped_column(default=True)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]

    __table_args__ = (sa.UniqueConstraint("student_id", "academic_year_id"),)


class Guardian(Base):
    __tablename__ = "guardian"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    student_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("student.id"), index=True)
    relation: Mapped[str] = mapped_column(sa.String(16))
    name_enc: Mapped[bytes] = mapped_column(Envelope())
    phone_enc: Mapped[bytes | None] = mapped_column(Envelope())
    phone_bidx: Mapped[bytes | None] = mapped_column(sa.LargeBinary(32), index=True)
    created_at: Mapped[datetime]


class Consent(Base):
    """A guardian's consent (监护人知情同意) for one student and school year."""

    __tablename__ = "consent"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    student_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("student.id"), index=True)
    academic_year_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("academic_year.id"))
    status: Mapped[str] = mapped_column(sa.String(16))  # granted / refused / withdrawn
    method: Mapped[str] = mapped_column(sa.String(16))  # paper / online / phone
    decided_on: Mapped[date]
    recorded_by: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("app_user.id"))
    recorded_at: Mapped[datetime]
    withdrawn_at: Mapped[datetime | None]

    __table_args__ = (
        sa.UniqueConstraint("student_id", "academic_year_id"),
        sa.CheckConstraint("status in ('granted','refused','withdrawn')", name="status"),
    )


class User(Base):
    __tablename__ = "app_user"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    username: Mapped[str] = mapped_column(sa.String(64), unique=True)
    display_name: Mapped[str] = mapped_column(sa.String(100))
    email: Mapped[str | None] = mapped_column(sa.String(200))
    password_hash: Mapped[str] = mapped_column(sa.String(200))
    # Rotated on logout, password change, disable and role change: old cookies stop working.
    session_token: Mapped[str] = mapped_column(sa.String(64), unique=True)  # SHA-256 of the cookie's token
    # SHA-256 of a login waiting for its second factor (the password step alone opens and ends no session)
    pending_login: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    is_active: Mapped[bool] = mapped_column(default=True)
    student_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("student.id"))  # class monitors
    totp_secret_enc: Mapped[bytes | None] = mapped_column(Envelope())
    totp_last_step: Mapped[int | None] = mapped_column(sa.BigInteger)  # a TOTP code is accepted once
    failed_logins: Mapped[int] = mapped_column(default=0)
    locked_until: Mapped[datetime | None]
    password_changed_at: Mapped[datetime]
    created_at: Mapped[datetime]
    last_login_at: Mapped[datetime | None]
    locale: Mapped[str | None] = mapped_column(sa.String(8))


class RoleAssignment(Base):
    """A user's role at one org unit (or, for a clinician, one institution)."""

    __tablename__ = "role_assignment"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("app_user.id"), index=True)
    role: Mapped[str] = mapped_column(sa.String(32))
    unit_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("org_unit.id"), index=True)
    institution_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("institution.id"))
    created_at: Mapped[datetime]

    __table_args__ = (
        sa.CheckConstraint("(role = 'clinician') = (institution_id is not null)", name="clinician_institution"),
        sa.CheckConstraint("role = 'clinician' or role = 'sysadmin' or unit_id is not null", name="unit_needed"),
    )


class ApiToken(Base):
    """A short-lived bearer token; only its SHA-256 is stored."""

    __tablename__ = "api_token"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_uuid)
    user_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("app_user.id"), index=True)
    token_hash: Mapped[bytes] = mapped_column(sa.LargeBinary(32), unique=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
