"""The append-only, hash-chained event log and the access log.

``record`` is called inside the caller's transaction: the event commits or rolls back with the
change it describes. It is ONE insert with no lock: the entry carries an ``entry_mac`` (keyed
HMAC of its content, ``core.audit_chain.entry_mac``) and no ``seq`` yet. The sequencer
(``sequence``; the scheduler's ``audit_sequence`` job every few seconds, and ``mhp audit verify``
before it verifies) takes the writers' lock, checks each pending entry's ``entry_mac``, gives it
the next gapless ``seq`` and its chain MAC, and moves the anchor — in entry-id order, in one
transaction per batch. So a submission never waits on a city-wide lock, the chain has no gaps or
forks, and an entry is tamper-evident from the moment it commits: edited or forged while pending,
it fails its entry MAC and is quarantined (``seq`` = −id) and reported by ``verify``. What a
database-only attacker can still do undetected is delete an entry before the sequencer reaches it
(seconds) — the same "maximum merge delay" trade-off as Certificate Transparency logs (RFC 6962 §3).

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
from mh_platform.services.context import SYSTEM, Actor, ServiceContext

_EVENTS: sa.Table = EventLog.__table__  # type: ignore[assignment]
_INSERT = _EVENTS.insert().inline()  # built once; inline: the id comes from the table (no nextval round trip first)
SEQUENCE_BATCH = 2000


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


def _row_data(r: Any) -> dict[str, Any]:
    """The MAC'd content of a stored entry, exactly as it was when recorded."""
    return _chain_data(r.at.isoformat(), str(r.actor_user_id) if r.actor_user_id else None, r.kind, r.object_type,
                       r.object_id, r.data)


def _entry(ctx: ServiceContext, actor: Actor | None, now: Any, kind: str, object_type: str | None, object_id: Any,
           data: dict[str, Any] | None) -> dict[str, Any]:
    actor_uuid = actor.user_id if actor else None
    oid = str(object_id) if object_id is not None else None
    payload = _jsonable(data or {})
    content = _chain_data(now.isoformat(), str(actor_uuid) if actor_uuid else None, kind, object_type, oid, payload)
    return {"at": now, "actor_user_id": actor_uuid, "kind": kind, "object_type": object_type, "object_id": oid,
            "data": payload, "entry_mac": audit_chain.entry_mac(content, ctx.audit_key)}


def record(ctx: ServiceContext, s: Session, actor: Actor | None, kind: str, object_type: str | None,
           object_id: Any, data: dict[str, Any] | None = None, *, buffer: list[dict[str, Any]] | None = None) -> None:
    """Append one event in the current transaction (one INSERT; the sequencer chains it). With
    ``buffer`` (a bulk path's list), the entry is added to it instead, for ``write_buffered`` to
    insert with the others, in the same order, before the transaction commits."""
    entry = _entry(ctx, actor, ctx.now(), kind, object_type, object_id, data)
    if buffer is not None:
        buffer.append(entry)
    else:
        _write(s, entry)


def write_buffered(s: Session, buffer: list[dict[str, Any]]) -> None:
    """Insert the entries ``record(..., buffer=)`` collected, in one INSERT, and empty the list."""
    if buffer:
        _write(s, list(buffer))
        buffer.clear()


def _write(s: Session, entries: dict[str, Any] | list[dict[str, Any]]) -> None:
    s.connection().execute(_INSERT, entries)


_ENTRY_COLUMNS = ("at", "actor_user_id", "kind", "object_type", "object_id", "data", "entry_mac")
_RIDE_CTE = (_EVENTS.insert()
             .values({c: sa.bindparam(f"mhp_ev_{c}", type_=_EVENTS.c[c].type) for c in _ENTRY_COLUMNS})
             .cte("mhp_audit_event"))


def riding(stmt: Any) -> Any:
    """``stmt`` with an audit INSERT attached as a data-modifying CTE (PostgreSQL), for
    ``record_riding``. Build it once, at import time, next to ``stmt``: both are then reused as they
    are, with no per-call statement building or cache-key work."""
    return stmt.add_cte(_RIDE_CTE)


def record_riding(ctx: ServiceContext, s: Session, stmt: Any, stmt_with_event: Any, params: dict[str, Any],
                  actor: Actor | None, kind: str, object_type: str | None, object_id: Any,
                  data: dict[str, Any] | None = None) -> Any:
    """Execute ``stmt`` (a statement the caller runs anyway) with ``params`` and record one event,
    in one round trip where the database allows it: on PostgreSQL ``stmt_with_event``
    (``riding(stmt)``) runs, whose INSERT is executed exactly once whether or not the statement
    reads it; elsewhere ``record`` then ``stmt``. Returns the statement's result. For hot paths,
    where one round trip is a real share of the request."""
    entry = _entry(ctx, actor, ctx.now(), kind, object_type, object_id, data)
    if s.get_bind().dialect.name == "postgresql":
        return s.execute(stmt_with_event, {**params, **{f"mhp_ev_{k}": v for k, v in entry.items()}})
    _write(s, entry)
    return s.execute(stmt, params)


def record_many(ctx: ServiceContext, s: Session, actor: Actor | None,
                items: Sequence[tuple[str, str | None, Any, dict[str, Any] | None]]) -> None:
    """``record`` for many events at once — (kind, object_type, object_id, data) each — in one insert."""
    if not items:
        return
    now = ctx.now()
    _write(s, [_entry(ctx, actor, now, kind, otype, oid, data) for kind, otype, oid, data in items])


# --------------------------------------------------------------------------- the sequencer


def _lock_and_anchor(s: Session) -> AuditAnchor | None:
    """Take the sequencer's lock for this transaction and return the anchor row (None before the
    first entry is chained). PostgreSQL: a transaction advisory lock (also held before the anchor
    row exists, when ``FOR UPDATE`` would lock nothing); SQLite: ``BEGIN IMMEDIATE`` already
    serialises writers."""
    if s.get_bind().dialect.name == "postgresql":
        s.execute(sa.text("SELECT pg_advisory_xact_lock(7303720601)"))
    return s.scalar(sa.select(AuditAnchor).where(AuditAnchor.id == 1))


_PENDING_ALL = (sa.select(_EVENTS.c.id, _EVENTS.c.at, _EVENTS.c.actor_user_id, _EVENTS.c.kind,
                          _EVENTS.c.object_type, _EVENTS.c.object_id, _EVENTS.c.data, _EVENTS.c.entry_mac)
                .where(_EVENTS.c.seq.is_(None)).order_by(_EVENTS.c.id))
_PENDING = _PENDING_ALL.limit(sa.bindparam("n"))
_CHAIN_UPDATE = (_EVENTS.update().where(_EVENTS.c.id == sa.bindparam("b_id"), _EVENTS.c.seq.is_(None))
                 .values(seq=sa.bindparam("b_seq"), prev_mac=sa.bindparam("b_prev"), mac=sa.bindparam("b_mac")))


@dataclass(frozen=True)
class SequenceResult:
    chained: int
    rejected: int
    head_seq: int | None


def sequence(ctx: ServiceContext, *, batch: int = SEQUENCE_BATCH, max_batches: int | None = None) -> SequenceResult:
    """Chain every pending entry, oldest id first, ``batch`` per transaction. Idempotent and safe to
    run from several processes at once (they serialise on the lock). An entry whose ``entry_mac``
    does not check is not chained: it is quarantined (``seq`` = −id) and an
    ``audit:entry_rejected`` event is recorded, so ``verify`` reports it."""
    chained = rejected = 0
    head: int | None = None
    n_batches = 0
    while max_batches is None or n_batches < max_batches:
        n_batches += 1
        with ctx.uow() as uow:
            s = uow.session
            anchor = _lock_and_anchor(s)
            rows = s.connection().execute(_PENDING, {"n": batch}).all()
            if not rows:
                head = anchor.last_seq if anchor else None
                break
            key = ctx.audit_key
            prev: Any = audit_chain.Checkpoint(anchor.last_seq, anchor.last_mac) if anchor else None
            updates: list[dict[str, Any]] = []
            bad: list[int] = []
            for r in rows:
                content = _row_data(r)
                if not audit_chain.entry_ok(content, r.entry_mac, key):
                    bad.append(r.id)
                    continue
                rec = audit_chain.append(prev, content, key)
                updates.append({"b_id": r.id, "b_seq": rec.seq, "b_prev": rec.prev_mac, "b_mac": rec.mac})
                prev = rec
            if updates:
                s.connection().execute(_CHAIN_UPDATE, updates)
                if anchor is None:
                    s.add(AuditAnchor(id=1, last_seq=prev.seq, last_mac=prev.mac))
                else:
                    anchor.last_seq, anchor.last_mac = prev.seq, prev.mac
            for rid in bad:
                s.execute(sa.update(EventLog).where(EventLog.id == rid, EventLog.seq.is_(None)).values(seq=-rid))
                record(ctx, s, SYSTEM, "audit:entry_rejected", "event_log", rid, {"reason": "entry_mac"})
            uow.commit()
            chained += len(updates)
            rejected += len(bad)
            head = prev.seq if prev is not None else None
            if len(rows) < batch and not bad:  # a rejection recorded an event: chain it too
                break
    return SequenceResult(chained, rejected, head)


def sequence_job(ctx: ServiceContext) -> dict[str, Any]:
    """The scheduler's ``audit_sequence`` job."""
    res = sequence(ctx)
    return {"chained": res.chained, "rejected": res.rejected, "head_seq": res.head_seq}


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None
    reason: str
    pending: int = 0  # entries not chained yet (each checked against its entry MAC)


def verify(ctx: ServiceContext) -> VerifyResult:
    """Walk the chain in sequence order and compare its head with the anchor; then check every
    pending entry's MAC and report quarantined ones. Read-only (``mhp audit verify`` runs the
    sequencer first)."""
    with ctx.uow() as uow:
        s = uow.session
        key = ctx.audit_key
        anchor = s.get(AuditAnchor, 1)
        rows = s.execute(sa.select(EventLog).where(EventLog.seq > 0).order_by(EventLog.seq)
                         .execution_options(yield_per=2000)).scalars()
        records = (audit_chain.ChainRecord(seq=r.seq, data=_row_data(r), prev_mac=r.prev_mac, mac=r.mac)  # type: ignore[arg-type]
                   for r in rows)
        report = audit_chain.verify(records, key,
                                    anchor=audit_chain.Checkpoint(anchor.last_seq, anchor.last_mac) if anchor else None)
        if not report.ok:
            bad = report.seq if report.seq is not None else report.expected_seq
            return VerifyResult(False, report.checked, bad, report.summary())
        quarantined = list(s.scalars(sa.select(EventLog.id).where(EventLog.seq < 0).order_by(EventLog.id).limit(20)))
        if quarantined:
            return VerifyResult(False, report.checked, None,
                                f"entries rejected by the sequencer (edited or forged before chaining): ids {quarantined}")
        pending = 0
        for r in s.execute(_PENDING_ALL):
            pending += 1
            if not audit_chain.entry_ok(_row_data(r), r.entry_mac, key):
                return VerifyResult(False, report.checked, None,
                                    f"pending entry id {r.id} was edited or forged (entry MAC does not check)", pending)
    return VerifyResult(True, report.checked, None, "", pending)


def log_access(s: Session, actor: Actor, *, object_type: str, object_id: uuid.UUID, field: str,
               student_id: uuid.UUID | None, now) -> None:
    """One row per sensitive field a person caused to be decrypted (who, role, unit, what, why, when)."""
    s.add(AccessLog(at=now, user_id=actor.user_id, role=actor.role.value if actor.role else None,
                    unit_id=actor.unit_id, object_type=object_type, object_id=object_id, student_id=student_id,
                    field=field, purpose=actor.purpose))
