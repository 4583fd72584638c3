"""The append-only, hash-chained event log and the access log.

``record`` is called inside the caller's transaction: the event commits or rolls back with the
change it describes. Writers serialise on the anchor row (``FOR UPDATE`` on PostgreSQL; SQLite
transactions are already serial), so sequence numbers have no gaps and the chain has no forks.
Event data holds codes, ids and numbers only — never plaintext of a sensitive field.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core import audit_chain
from mh_platform.db.models import AccessLog, AuditAnchor, EventLog
from mh_platform.services.context import Actor, ServiceContext


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        if isinstance(v, uuid.UUID):
            v = str(v)
        elif isinstance(v, dict):
            v = _jsonable(v)
        out[k] = v
    return out


def _chain_data(at: str, actor: str | None, kind: str, otype: str | None, oid: str | None,
                data: dict[str, Any] | None) -> dict[str, Any]:
    return {"at": at, "actor": actor, "kind": kind, "object_type": otype, "object_id": oid, "data": data or {}}


def _lock_and_anchor(s: Session) -> AuditAnchor | None:
    """Take the writers' lock (once per transaction on PostgreSQL) and return the anchor row.

    Within one transaction the anchor object is kept in ``s.info`` (we hold the lock, so nobody
    else can move it); a new transaction, or a rolled-back savepoint, reads it again.
    """
    s.connection()  # make sure the transaction has begun: get_transaction() is None before that
    root = s.get_transaction()
    if s.get_bind().dialect.name == "postgresql" and s.info.get("mhp_audit_lock") is not root:
        # One writer at a time, also before the first anchor row exists (FOR UPDATE locks nothing then).
        s.execute(sa.text("SELECT pg_advisory_xact_lock(7303720601)"))
        s.info["mhp_audit_lock"] = root
    anchor = s.info.get("mhp_audit_anchor")
    if anchor is None or s.info.get("mhp_audit_anchor_tx") is not root or anchor not in s:
        anchor = s.scalar(sa.select(AuditAnchor).where(AuditAnchor.id == 1))
    return anchor


def record(ctx: ServiceContext, s: Session, actor: Actor | None, kind: str, object_type: str | None,
           object_id: Any, data: dict[str, Any] | None = None) -> int:
    """Append one event to the chain in the current transaction; returns its sequence number."""
    anchor = _lock_and_anchor(s)
    prev = audit_chain.Checkpoint(anchor.last_seq, anchor.last_mac) if anchor else None
    now = ctx.now()
    actor_id = str(actor.user_id) if actor and actor.user_id else None
    oid = str(object_id) if object_id is not None else None
    payload = _jsonable(data or {})
    rec = audit_chain.append(prev, _chain_data(now.isoformat(), actor_id, kind, object_type, oid, payload),
                             ctx.audit_key)
    s.add(EventLog(seq=rec.seq, at=now, actor_user_id=actor.user_id if actor else None, kind=kind,
                   object_type=object_type, object_id=oid, data=payload, prev_mac=rec.prev_mac, mac=rec.mac))
    if anchor is None:
        anchor = AuditAnchor(id=1, last_seq=rec.seq, last_mac=rec.mac)
        s.add(anchor)
        s.flush()
    else:
        anchor.last_seq, anchor.last_mac = rec.seq, rec.mac
    s.info["mhp_audit_anchor"], s.info["mhp_audit_anchor_tx"] = anchor, s.get_transaction()
    return rec.seq


def record_many(ctx: ServiceContext, s: Session, actor: Actor | None,
                items: Sequence[tuple[str, str | None, Any, dict[str, Any] | None]]) -> list[int]:
    """``record`` for many events at once — (kind, object_type, object_id, data) each — in the current
    transaction: one lock, one anchor read, one bulk insert (batch jobs such as the escalation sweep)."""
    if not items:
        return []
    anchor = _lock_and_anchor(s)
    s.flush()
    prev: Any = audit_chain.Checkpoint(anchor.last_seq, anchor.last_mac) if anchor else None
    now = ctx.now()
    actor_id = str(actor.user_id) if actor and actor.user_id else None
    rows, seqs = [], []
    for kind, object_type, object_id, data in items:
        oid = str(object_id) if object_id is not None else None
        payload = _jsonable(data or {})
        rec = audit_chain.append(prev, _chain_data(now.isoformat(), actor_id, kind, object_type, oid, payload),
                                 ctx.audit_key)
        rows.append({"seq": rec.seq, "at": now, "actor_user_id": actor.user_id if actor else None, "kind": kind,
                     "object_type": object_type, "object_id": oid, "data": payload, "prev_mac": rec.prev_mac,
                     "mac": rec.mac})
        seqs.append(rec.seq)
        prev = rec
    s.execute(sa.insert(EventLog), rows)
    if anchor is None:
        s.add(AuditAnchor(id=1, last_seq=prev.seq, last_mac=prev.mac))
    else:
        anchor.last_seq, anchor.last_mac = prev.seq, prev.mac
    s.flush()
    return seqs


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None
    reason: str


def verify(ctx: ServiceContext) -> VerifyResult:
    """Walk the whole chain in sequence order and compare its head with the anchor."""
    with ctx.uow() as uow:
        s = uow.session
        anchor = s.get(AuditAnchor, 1)
        rows = s.execute(sa.select(EventLog).order_by(EventLog.seq).execution_options(yield_per=2000)).scalars()
        records = (
            audit_chain.ChainRecord(
                seq=r.seq,
                data=_chain_data(r.at.isoformat(), str(r.actor_user_id) if r.actor_user_id else None,
                                 r.kind, r.object_type, r.object_id, r.data),
                prev_mac=r.prev_mac, mac=r.mac)
            for r in rows
        )
        report = audit_chain.verify(records, ctx.audit_key,
                                    anchor=audit_chain.Checkpoint(anchor.last_seq, anchor.last_mac) if anchor else None)
    bad = report.seq if report.seq is not None else report.expected_seq
    return VerifyResult(report.ok, report.checked, None if report.ok else bad,
                        "" if report.ok else report.summary())


def log_access(s: Session, actor: Actor, *, object_type: str, object_id: uuid.UUID, field: str,
               student_id: uuid.UUID | None, now) -> None:
    """One row per sensitive field a person caused to be decrypted (who, role, unit, what, why, when)."""
    s.add(AccessLog(at=now, user_id=actor.user_id, role=actor.role.value if actor.role else None,
                    unit_id=actor.unit_id, object_type=object_type, object_id=object_id, student_id=student_id,
                    field=field, purpose=actor.purpose))
