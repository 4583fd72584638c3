"""Per-student data-key lifecycle and crypto-shredding, as pure data structures.

Lifecycle of a student's key versions: ``active`` (the one new values are sealed with; at most
one per student) → ``decrypt_only`` (after a DEK rotation, until re-encryption moves every value
off it) → ``destroyed`` (wrapped bytes deleted; values sealed under it are unreadable forever).

Erasing a student (crypto-shredding) destroys *every* version of that student's key and writes an
``ErasureRecord`` to the erasure ledger, which is kept outside the main database and replayed
after any restore (``replay_ledger``) so an older backup cannot bring the student back. The DB
layer also deletes the student's blind-index rows.

Invariants: destruction needs two different, named people (requester ≠ approver,
``require_two_people``); a request to erase is approved within ``ERASURE_REQUEST_TTL`` or not at all
(``erasure_request_expires_at`` / ``erasure_request_open``); ledger records carry ids, a reason
*code* and a time — no names or free text; ``now`` is passed in, never read here.
Limit: free text naming *other* students (a concern naming a classmate) is sealed under the
subject's key, so it is shredded with the subject, not with the classmate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from mh_platform.crypto.keyring import DataKey, KeyPurpose, Keyring, WrappedDataKey

_REASON_CODE = re.compile(r"^[a-z0-9_]{1,32}$")
LEDGER_RECORD_TYPE = "erasure.v1"
ERASURE_REQUEST_TTL = timedelta(days=7)
"""How long a request to erase a student waits for its second person; after that it is dead."""


class ShreddingError(ValueError):
    """A key-lifecycle rule was broken (two-person rule, wrong student, bad state)."""


class KeyState(StrEnum):
    ACTIVE = "active"
    DECRYPT_ONLY = "decrypt_only"
    DESTROYED = "destroyed"


@dataclass(frozen=True)
class StudentKey:
    """One version of one student's data key, as the key table stores it.

    Invariant: ``wrapped`` is None exactly when ``state`` is DESTROYED.
    """

    key_id: UUID
    student_id: UUID
    version: int
    state: KeyState
    wrapped: WrappedDataKey | None

    def __post_init__(self) -> None:
        if (self.wrapped is None) != (self.state is KeyState.DESTROYED):
            raise ShreddingError("a destroyed key has no wrapped bytes; a live key must have them")
        if self.wrapped is not None and (
            self.wrapped.key_id != self.key_id
            or self.wrapped.owner_id != self.student_id
            or self.wrapped.purpose is not KeyPurpose.STUDENT
        ):
            raise ShreddingError("wrapped key does not belong to this student key row")
        if self.version < 1:
            raise ShreddingError("key versions start at 1")


@dataclass(frozen=True)
class Tombstone:
    """What replaces a destroyed key row's secret: which key, whose, when, under which erasure."""

    key_id: UUID
    student_id: UUID
    erasure_id: UUID
    destroyed_at: datetime


@dataclass(frozen=True)
class ErasureRecord:
    """One line of the erasure ledger. Contains no personal data beyond pseudonymous UUIDs."""

    erasure_id: UUID
    student_id: UUID
    key_ids: tuple[UUID, ...]
    erased_at: datetime
    requested_by: UUID
    approved_by: UUID
    reason_code: str

    def to_ledger_dict(self) -> dict[str, Any]:
        """JSON-ready dict (suitable as ``audit_chain`` record data for a MAC'd ledger)."""
        return {
            "type": LEDGER_RECORD_TYPE,
            "erasure_id": str(self.erasure_id),
            "student_id": str(self.student_id),
            "key_ids": sorted(str(k) for k in self.key_ids),
            "erased_at": self.erased_at.isoformat(),
            "requested_by": str(self.requested_by),
            "approved_by": str(self.approved_by),
            "reason_code": self.reason_code,
        }

    @classmethod
    def from_ledger_dict(cls, d: dict[str, Any]) -> ErasureRecord:
        if d.get("type") != LEDGER_RECORD_TYPE:
            raise ShreddingError("not an erasure ledger record")
        try:
            return cls(
                erasure_id=UUID(d["erasure_id"]),
                student_id=UUID(d["student_id"]),
                key_ids=tuple(UUID(k) for k in d["key_ids"]),
                erased_at=datetime.fromisoformat(d["erased_at"]),
                requested_by=UUID(d["requested_by"]),
                approved_by=UUID(d["approved_by"]),
                reason_code=str(d["reason_code"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ShreddingError(f"malformed erasure ledger record: {type(exc).__name__}") from None


def new_student_key(keyring: Keyring, student_id: UUID, *, version: int = 1) -> tuple[DataKey, StudentKey]:
    """Create a student's data key (wrapped under the primary master) and its key-table row."""
    key, wrapped = keyring.create_data_key(KeyPurpose.STUDENT, student_id)
    return key, StudentKey(key.key_id, student_id, version, KeyState.ACTIVE, wrapped)


def active_key(keys: Iterable[StudentKey]) -> StudentKey | None:
    """The student's active key row, or None (none yet, or erased). Several actives is an error."""
    active = [k for k in keys if k.state is KeyState.ACTIVE]
    if len(active) > 1:
        raise ShreddingError("more than one active key for a student")
    return active[0] if active else None


def rotate_student_key(
    keyring: Keyring, keys: Sequence[StudentKey], student_id: UUID
) -> tuple[DataKey, StudentKey, list[StudentKey]]:
    """DEK rotation: a new active version; the old active becomes decrypt-only.

    Returns (new key, new row, changed old rows). Re-encryption then moves values to the new key;
    afterwards the decrypt-only versions can be destroyed (``retire_key``).
    """
    _same_student(keys, student_id)
    if keys and all(k.state is KeyState.DESTROYED for k in keys):
        raise ShreddingError("student has been erased; no new keys")
    version = max((k.version for k in keys), default=0) + 1
    key, row = new_student_key(keyring, student_id, version=version)
    changed = [replace(k, state=KeyState.DECRYPT_ONLY) for k in keys if k.state is KeyState.ACTIVE]
    return key, row, changed


def retire_key(row: StudentKey, *, erasure_id: UUID, now: datetime) -> tuple[StudentKey, Tombstone]:
    """Destroy one non-active key version (after re-encryption moved every value off it)."""
    if row.state is KeyState.ACTIVE:
        raise ShreddingError("cannot retire the active key; rotate first")
    _aware(now)
    return (
        replace(row, state=KeyState.DESTROYED, wrapped=None),
        Tombstone(row.key_id, row.student_id, erasure_id, now),
    )


def _same_student(keys: Iterable[StudentKey], student_id: UUID) -> None:
    if any(k.student_id != student_id for k in keys):
        raise ShreddingError("key rows of another student were passed in")


def _aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ShreddingError("now must be timezone-aware")


def require_two_people(requested_by: UUID | None, approved_by: UUID | None) -> None:
    """The two-person rule of key destruction: both people are named users, and they differ."""
    if requested_by is None or approved_by is None:
        raise ShreddingError("key destruction needs two named people, a requester and an approver")
    if requested_by == approved_by:
        raise ShreddingError("key destruction needs a second person to approve")


def check_reason_code(reason_code: str) -> str:
    """A reason is a short code (``[a-z0-9_]``, at most 32), never free text; returns it."""
    if not _REASON_CODE.fullmatch(reason_code or ""):
        raise ShreddingError("reason_code must be a short code ([a-z0-9_], at most 32), not free text")
    return reason_code


def erasure_request_expires_at(requested_at: datetime, ttl: timedelta = ERASURE_REQUEST_TTL) -> datetime:
    """When a request filed at ``requested_at`` stops being approvable."""
    _aware(requested_at)
    if ttl <= timedelta(0):
        raise ShreddingError("an erasure request needs a positive lifetime")
    return requested_at + ttl


def erasure_request_open(expires_at: datetime, now: datetime) -> bool:
    """True while a request may still be approved (strictly before its expiry)."""
    _aware(expires_at)
    _aware(now)
    return now < expires_at


def plan_erasure(
    keys: Sequence[StudentKey],
    *,
    student_id: UUID,
    now: datetime,
    requested_by: UUID,
    approved_by: UUID,
    reason_code: str,
    erasure_id: UUID | None = None,
) -> tuple[ErasureRecord, list[StudentKey], list[Tombstone]]:
    """Crypto-shred one student: every key version destroyed, one ledger record.

    The caller, in one transaction: writes the returned rows (wrapped bytes set to NULL),
    deletes the student's blind-index rows, appends the record to the erasure ledger (outside the
    main DB) and to the audit chain, then calls ``keyring.forget`` for each key id.
    Two-person rule: ``requested_by`` must differ from ``approved_by`` (``require_two_people``).
    """
    _aware(now)
    require_two_people(requested_by, approved_by)
    check_reason_code(reason_code)
    _same_student(keys, student_id)
    eid = erasure_id or uuid4()
    record = ErasureRecord(
        erasure_id=eid,
        student_id=student_id,
        key_ids=tuple(sorted((k.key_id for k in keys), key=str)),
        erased_at=now,
        requested_by=requested_by,
        approved_by=approved_by,
        reason_code=reason_code,
    )
    destroyed = [replace(k, state=KeyState.DESTROYED, wrapped=None) for k in keys]
    tombstones = [Tombstone(k.key_id, student_id, eid, now) for k in keys]
    return record, destroyed, tombstones


def erased_students(ledger: Iterable[ErasureRecord]) -> frozenset[UUID]:
    """Every student the ledger says was erased (their blind-index rows must not exist)."""
    return frozenset(r.student_id for r in ledger)


def replay_ledger(ledger: Iterable[ErasureRecord], keys: Iterable[StudentKey]) -> list[StudentKey]:
    """After a restore: the key rows that must be destroyed again before the DB goes live.

    A row is destroyed if its student was erased *or* its key id is listed in any record (so a
    key version that an older backup still holds is caught either way). Returns the rows in their
    destroyed form; rows already destroyed are not returned (replay is idempotent).
    """
    records = list(ledger)
    students = erased_students(records)
    key_ids = {k for r in records for k in r.key_ids}
    return [
        replace(k, state=KeyState.DESTROYED, wrapped=None)
        for k in keys
        if k.state is not KeyState.DESTROYED and (k.student_id in students or k.key_id in key_ids)
    ]
