"""The one place that decrypts sensitive fields for a person.

Every value opened here writes an access-log row (who, role, unit, object, field, purpose, when)
in the caller's transaction. Callers must already have authorised the read (access.* functions
and the role's permissions); this module does not widen or narrow scope, it records and opens.
A value that cannot be opened (shredded key, tampering, a value moved to another row) gives
``UNREADABLE`` and a security event, never plaintext from somewhere else.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from mh_platform.crypto import envelope as env
from mh_platform.services import audit
from mh_platform.services.context import Actor, ServiceContext

UNREADABLE = "⟨不可读 unreadable⟩"


def reveal(ctx: ServiceContext, s: Session, actor: Actor, obj: Any, column: str, *,
           student_id: uuid.UUID | None = None, purpose: str | None = None) -> str | None:
    """Open ``obj.<column>`` (an envelope) for ``actor``; log the access. None stays None."""
    envelope = getattr(obj, column)
    if envelope is None:
        return None
    table = obj.__tablename__
    who = actor.with_purpose(purpose) if purpose else actor
    audit.log_access(s, who, object_type=table, object_id=obj.id, field=column, student_id=student_id,
                     now=ctx.now())
    try:
        return ctx.keyring.open_field(s, envelope, table=table, column=column, row_id=obj.id)
    except env.KeyShredded:
        return UNREADABLE
    except env.EnvelopeError as exc:
        audit.record(ctx, s, who, "security:envelope_refused", table, obj.id,
                     {"field": column, "error": type(exc).__name__})
        return UNREADABLE


def reveal_many(ctx: ServiceContext, s: Session, actor: Actor, objs: Iterable[Any], column: str, *,
                student_attr: str | None = "student_id", purpose: str | None = None) -> dict[uuid.UUID, str | None]:
    """``reveal`` for a list of rows (e.g. the names of one class); one access-log row each."""
    out: dict[uuid.UUID, str | None] = {}
    for obj in objs:
        sid = getattr(obj, student_attr) if student_attr else None
        if student_attr == "id":
            sid = obj.id
        out[obj.id] = reveal(ctx, s, actor, obj, column, student_id=sid, purpose=purpose)
    return out


def student_names(ctx: ServiceContext, s: Session, actor: Actor, students: Iterable[Any], *,
                  purpose: str | None = None) -> dict[uuid.UUID, str | None]:
    """Names of students the caller is already allowed to see (logged per student)."""
    return reveal_many(ctx, s, actor, students, "name_enc", student_attr="id", purpose=purpose)
