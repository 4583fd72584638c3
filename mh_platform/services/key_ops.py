"""Keys over time: master rotation (re-wrap), data-key rotation and online re-encryption,
two-person crypto-shredding of one student, and backups whose restore replays the erasure ledger.

Every step is idempotent and resumable: work is claimed row by row with compare-and-swap
updates (``WHERE id = :id AND <column> = :old``), committed in small batches, so a run killed
midway leaves no half-written state and a second run does only what is left.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core.authz import Permission, can
from mh_platform.core.errors import Conflict, Forbidden, InvalidTransition, NotFound, ValidationFailed
from mh_platform.core.types import Role
from mh_platform.crypto import envelope as env
from mh_platform.crypto import keyring as kr
from mh_platform.crypto import shredding
from mh_platform.db.base import Envelope
from mh_platform.db.models import (
    Base,
    DataKey,
    Enrolment,
    ErasureLedger,
    ErasureRequest,
    Guardian,
    Student,
    User,
)
from mh_platform.services import audit
from mh_platform.services.context import Actor, ServiceContext, UnitOfWork
from mh_platform.services.ids import id_or_404

ROTATING_PURPOSES = ("student", "system")  # blind-index and audit keys are only re-wrapped


def envelope_columns() -> list[tuple[sa.Table, sa.Column]]:
    """Every (table, column) that stores an encryption envelope, from the models."""
    out = []
    for table in Base.metadata.sorted_tables:
        for col in table.columns:
            if isinstance(col.type, Envelope):
                out.append((table, col))
    return out


def _wrapped(row: Any) -> kr.WrappedDataKey:
    return kr.WrappedDataKey(row.id, kr.KeyPurpose(row.purpose), row.student_id, row.master_key_id, row.wrapped)


# ---- master rotation ------------------------------------------------------------------------

def rotate_master(ctx: ServiceContext, actor: Actor, batch: int = 500) -> dict[str, int]:
    """Re-wrap every live data key under the primary master. Data and envelopes are unchanged."""
    ks = ctx.keyring.keyring
    primary = ks.masters.primary_id
    done = 0
    while True:
        with ctx.uow() as uow:
            s = uow.session
            rows = list(s.scalars(sa.select(DataKey).where(DataKey.wrapped.is_not(None),
                                                           DataKey.master_key_id != primary).limit(batch)))
            if not rows:
                audit.record(ctx, s, actor, "keys:master_rotated", "master_key", None,
                             {"primary": primary, "rewrapped": done})
                uow.commit()
                return {"rewrapped": done, "primary": primary}  # type: ignore[dict-item]
            for row in rows:
                new = ks.rewrap(_wrapped(row))
                n = cast(sa.CursorResult, s.execute(
                    sa.update(DataKey).where(DataKey.id == row.id, DataKey.master_key_id == row.master_key_id)
                    .values(wrapped=new.blob, master_key_id=new.master_key_id))).rowcount
                done += n
            uow.commit()


# ---- data-key rotation and re-encryption -----------------------------------------------------

def rotate_data_keys(ctx: ServiceContext, actor: Actor, batch: int = 1000) -> dict[str, int]:
    """Give every student and the system a new active data key; old ones become decrypt-only.

    New values are sealed with the new keys at once; ``reencrypt`` moves existing values.
    """
    now = ctx.now()
    rotated = 0
    with ctx.uow() as uow:
        s = uow.session
        old = list(s.execute(sa.select(DataKey.id, DataKey.purpose, DataKey.student_id)
                             .where(DataKey.active.is_(True), DataKey.purpose.in_(ROTATING_PURPOSES))))
        for i in range(0, len(old), batch):
            chunk = old[i:i + batch]
            s.execute(sa.update(DataKey).where(DataKey.id.in_([r.id for r in chunk])).values(active=False))
            s.flush()
            for r in chunk:
                key, wrapped = ctx.keyring.keyring.create_data_key(kr.KeyPurpose(r.purpose), r.student_id)
                s.add(DataKey(id=key.key_id, purpose=r.purpose, student_id=r.student_id, wrapped=wrapped.blob,
                              master_key_id=wrapped.master_key_id, active=True, created_at=now))
                rotated += 1
        audit.record(ctx, s, actor, "keys:data_keys_rotated", "data_key", None, {"rotated": rotated})
        uow.commit()
    ctx.keyring._system_cache.clear()
    return {"rotated": rotated}


@dataclass
class ReencryptReport:
    reencrypted: int = 0
    unreadable: int = 0
    scanned: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"reencrypted": self.reencrypted, "unreadable": self.unreadable, "scanned": self.scanned}


def _id_pages(s: Session, table: sa.Table, col: sa.Column, after: Any, size: int) -> list[Any]:
    q = sa.select(table.c.id, col).where(col.is_not(None)).order_by(table.c.id).limit(size)
    if after is not None:
        q = q.where(table.c.id > after)
    return list(s.execute(q))


def reencrypt(ctx: ServiceContext, actor: Actor, batch: int = 500, stop_after: int | None = None,
              pause_s: float = 0.0) -> ReencryptReport:
    """Move every envelope that sits on an inactive key onto its owner's active key.

    Online: each batch is one short transaction; writes are compare-and-swap on the old bytes,
    so a concurrent writer wins and its (already current) value is left alone. ``stop_after``
    (tests) stops after that many re-encrypted values, like a killed run.
    """
    rep = ReencryptReport()
    with ctx.uow() as uow:
        keys = {r.id: r for r in uow.session.execute(
            sa.select(DataKey.id, DataKey.purpose, DataKey.student_id, DataKey.wrapped, DataKey.master_key_id,
                      DataKey.active))}
    inactive = {kid for kid, r in keys.items() if not r.active and r.wrapped is not None}
    active_by_owner = {(r.purpose, r.student_id): kid for kid, r in keys.items() if r.active}
    if not inactive:
        return rep
    for table, col in envelope_columns():
        after = None
        while True:
            with ctx.uow() as uow:
                s = uow.session
                rows = _id_pages(s, table, col, after, batch)
                if not rows:
                    break
                after = rows[-1][0]
                for row_id, blob in rows:
                    rep.scanned += 1
                    try:
                        kid = env.parse_header(blob).key_id
                    except env.EnvelopeError:
                        rep.unreadable += 1
                        continue
                    if kid not in inactive:
                        continue
                    owner = keys[kid]
                    new_kid = active_by_owner.get((owner.purpose, owner.student_id))
                    if new_kid is None:
                        continue
                    new_key = ctx.keyring.keyring.unwrap(_wrapped(keys[new_kid]))
                    try:
                        new_blob = env.reseal(ctx.keyring._lookup_in(s), blob,
                                              env.AAD(table.name, col.name, row_id), new_key)
                    except env.EnvelopeError:
                        rep.unreadable += 1
                        continue
                    n = cast(sa.CursorResult, s.execute(sa.update(table).where(table.c.id == row_id, col == blob)
                                                        .values({col.name: new_blob}))).rowcount
                    rep.reencrypted += n
                uow.commit()
            if stop_after is not None and rep.reencrypted >= stop_after:
                return rep
            if pause_s:
                time.sleep(pause_s)  # throttle: leave room for the serving app
    with ctx.uow() as uow:
        audit.record(ctx, uow.session, actor, "keys:reencrypted", "data_key", None, rep.as_dict())
        uow.commit()
    return rep


def keys_in_use(ctx: ServiceContext) -> dict[uuid.UUID, int]:
    """How many envelopes sit on each key id (for checks and `mhp keys status`)."""
    counts: dict[uuid.UUID, int] = {}
    with ctx.uow() as uow:
        for _table, col in envelope_columns():
            for (blob,) in uow.session.execute(sa.select(col).where(col.is_not(None))):
                kid = env.parse_header(blob).key_id
                counts[kid] = counts.get(kid, 0) + 1
    return counts


# ---- crypto-shredding ------------------------------------------------------------------------

def _ledger_path(ctx: ServiceContext) -> pathlib.Path:
    return pathlib.Path(ctx.settings.erasure_ledger_file)


def _append_ledger_file(ctx: ServiceContext, entry: dict[str, str]) -> None:
    p = _ledger_path(ctx)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_ledger_file(ctx: ServiceContext) -> list[dict[str, str]]:
    p = _ledger_path(ctx)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def _destroy_in(s: Session, student_id: uuid.UUID, now: datetime) -> int:
    n = cast(sa.CursorResult, s.execute(
        sa.update(DataKey).where(DataKey.student_id == student_id, DataKey.wrapped.is_not(None))
        .values(wrapped=None, active=False, destroyed_at=now))).rowcount
    s.execute(sa.update(Student).where(Student.id == student_id)
              .values(id_number_bidx=None, student_number_bidx=None, erased_at=now))
    s.execute(sa.update(Guardian).where(Guardian.student_id == student_id).values(phone_bidx=None))
    return n


# Two-person erasure. Destroying a student's keys is irreversible (backups included: the ledger
# is replayed after every restore), so one person can never do it: a named user holding
# ``student:erase`` files a request (``request_erasure``), a *different* one approves it within
# ``shredding.ERASURE_REQUEST_TTL`` (``approve_erasure``), and only that approval destroys the keys,
# in the same transaction. The two-person rule itself lives in the pure core
# (``shredding.require_two_people`` / ``plan_erasure``). Every step, refusals included, is audited
# with ids and codes only.

ERASE = Permission.STUDENT_ERASE


def _refuse(ctx: ServiceContext, uow: UnitOfWork, actor: Actor, request_id: uuid.UUID | None, code: str,
            exc: Exception) -> NoReturn:
    """Record a refused erasure step (``code`` says why), commit that record alone, raise ``exc``."""
    uow.session.rollback()
    audit.record(ctx, uow.session, actor, "keys:erasure_refused", "erasure_request", request_id, {"code": code})
    uow.commit()
    raise exc


def _require_eraser(ctx: ServiceContext, uow: UnitOfWork, actor: Actor, request_id: uuid.UUID | None) -> None:
    """A named, active user whose role holds ``student:erase``; else Forbidden (audited)."""
    user = uow.session.get(User, actor.user_id) if actor.user_id is not None else None
    if user is None or not user.is_active or not can(actor.role, ERASE):
        _refuse(ctx, uow, actor, request_id, "role",
                Forbidden("erasing a student needs a named user whose role may erase (sysadmin, city officer)"))


def _reach_student(s: Session, actor: Actor, student_id: uuid.UUID) -> Student:
    """The student, if the actor reaches them: a sysadmin (no unit) everywhere, anyone else only
    students with an enrolment (current or past) under their unit; else NotFound."""
    student = s.get(Student, student_id)
    if student is None:
        raise NotFound("student not found")
    if actor.role != Role.SYSADMIN:
        unit = actor.unit_path
        paths = s.scalars(sa.select(Enrolment.unit_path).where(Enrolment.student_id == student_id))
        if not unit or not any(p.startswith(unit) for p in paths):
            raise NotFound("student not found")
    return student


def _erased(s: Session, student: Student) -> bool:
    return student.erased_at is not None or s.scalar(
        sa.select(ErasureLedger.id).where(ErasureLedger.student_id == student.id)) is not None


def _request_view(r: ErasureRequest) -> dict[str, Any]:
    return {"request": str(r.id), "student": str(r.student_id), "reason": r.reason_code, "status": r.status,
            "requested_by": str(r.requested_by), "requested_at": r.requested_at.isoformat(),
            "expires_at": r.expires_at.isoformat()}


def _expire_stale(ctx: ServiceContext, s: Session, now: datetime, student_id: uuid.UUID | None = None) -> None:
    """Mark pending requests past their expiry as ``expired`` (each audited)."""
    q = sa.select(ErasureRequest.id).where(ErasureRequest.status == "pending", ErasureRequest.expires_at <= now)
    if student_id is not None:
        q = q.where(ErasureRequest.student_id == student_id)
    for rid in list(s.scalars(q)):
        n = cast(sa.CursorResult, s.execute(
            sa.update(ErasureRequest).where(ErasureRequest.id == rid, ErasureRequest.status == "pending")
            .values(status="expired"))).rowcount
        if n:
            audit.record(ctx, s, None, "keys:erasure_expired", "erasure_request", rid, {})


def request_erasure(ctx: ServiceContext, actor: Actor, student_id: uuid.UUID | str, reason_code: str) -> dict[str, Any]:
    """Step 1 of 2: file a request to crypto-shred one student. Destroys nothing; a different
    authorised user must approve it (``approve_erasure``) before it expires."""
    sid = id_or_404(student_id, "student")
    try:
        reason = shredding.check_reason_code(reason_code)
    except shredding.ShreddingError as exc:
        raise ValidationFailed(str(exc)) from None
    now = ctx.now()
    with ctx.uow() as uow:
        s = uow.session
        _require_eraser(ctx, uow, actor, None)
        student = _reach_student(s, actor, sid)
        if _erased(s, student):
            raise InvalidTransition("the student is already erased")
        _expire_stale(ctx, s, now, sid)
        live = s.scalar(sa.select(ErasureRequest.id).where(ErasureRequest.student_id == sid,
                                                           ErasureRequest.status == "pending"))
        if live is not None:
            raise InvalidTransition(f"erasure request {live} is already pending for this student")
        req = ErasureRequest(id=uuid.uuid4(), student_id=sid, reason_code=reason, status="pending",
                             requested_by=actor.user_id, requested_at=now,
                             expires_at=shredding.erasure_request_expires_at(now))
        s.add(req)
        try:
            s.flush()
        except sa.exc.IntegrityError:  # a concurrent request for the same student won
            raise Conflict("another erasure request for this student was filed just now") from None
        audit.record(ctx, s, actor, "keys:erasure_requested", "erasure_request", req.id,
                     {"student": str(sid), "reason": reason, "expires_at": req.expires_at.isoformat()})
        uow.commit()
        return _request_view(req)


def _student_keys(s: Session, student_id: uuid.UUID) -> list[shredding.StudentKey]:
    """The student's key rows in the pure core's form (for ``plan_erasure``)."""
    rows = s.scalars(sa.select(DataKey).where(DataKey.student_id == student_id,
                                              DataKey.purpose == kr.KeyPurpose.STUDENT.value)
                     .order_by(DataKey.created_at, DataKey.id))
    out = []
    for version, r in enumerate(rows, start=1):
        state = (shredding.KeyState.DESTROYED if r.wrapped is None
                 else shredding.KeyState.ACTIVE if r.active else shredding.KeyState.DECRYPT_ONLY)
        out.append(shredding.StudentKey(r.id, student_id, version, state, _wrapped(r) if r.wrapped else None))
    return out


def _request_in_reach(ctx: ServiceContext, uow: Any, actor: Actor, rid: uuid.UUID) -> tuple[ErasureRequest, Student]:
    """The request and its student, for an actor allowed to decide it (``student:erase``, the student
    within reach); NotFound otherwise."""
    _require_eraser(ctx, uow, actor, rid)
    req = uow.session.get(ErasureRequest, rid)
    if req is None:
        raise NotFound("erasure request not found")
    return req, _reach_student(uow.session, actor, req.student_id)


def approve_erasure(ctx: ServiceContext, actor: Actor, request_id: uuid.UUID | str) -> dict[str, Any]:
    """Step 2 of 2: a second authorised user approves a pending request, and in this one
    transaction every key of the student is destroyed, their blind indexes go, the erasure is
    written to the ledger (database row and off-database file) and audited.

    Refused (and audited): the requester approving their own request, a role without
    ``student:erase``, a request that is not pending or has expired."""
    rid = id_or_404(request_id, "erasure request")
    now = ctx.now()
    with ctx.uow() as uow:
        s = uow.session
        req, student = _request_in_reach(ctx, uow, actor, rid)
        try:
            shredding.require_two_people(req.requested_by, actor.user_id)
        except shredding.ShreddingError as exc:
            _refuse(ctx, uow, actor, rid, "same_person", Forbidden(str(exc)))
        if req.status != "pending":
            _refuse(ctx, uow, actor, rid, "not_pending", InvalidTransition(f"the erasure request is {req.status}"))
        if not shredding.erasure_request_open(req.expires_at, now):
            _refuse(ctx, uow, actor, rid, "expired",
                    InvalidTransition("the erasure request expired; file a new one"))
        requester = s.get(User, req.requested_by)
        if requester is None or not requester.is_active:
            _refuse(ctx, uow, actor, rid, "requester_inactive",
                    InvalidTransition("the requester's account is disabled; file a new request"))
        record, _, _ = shredding.plan_erasure(
            _student_keys(s, student.id), student_id=student.id, now=now, requested_by=req.requested_by,
            approved_by=cast(uuid.UUID, actor.user_id), reason_code=req.reason_code, erasure_id=req.id)
        # claim the request (compare-and-swap): of two concurrent approvals exactly one goes on
        n = cast(sa.CursorResult, s.execute(
            sa.update(ErasureRequest).where(ErasureRequest.id == rid, ErasureRequest.status == "pending")
            .values(status="approved", decided_by=actor.user_id, decided_at=now))).rowcount
        if n != 1:
            raise Conflict("the erasure request was decided meanwhile")
        already = _erased(s, student)
        destroyed = _destroy_in(s, student.id, now)
        if not already:
            s.add(ErasureLedger(student_id=student.id, erased_at=now, erased_by=actor.user_id,
                                reason_code=record.reason_code, request_id=rid))
        audit.record(ctx, s, actor, "keys:erasure_approved", "erasure_request", rid,
                     {"student": str(student.id), "requested_by": str(req.requested_by)})
        audit.record(ctx, s, actor, "keys:student_shredded", "student", student.id,
                     {"keys": destroyed, "reason": record.reason_code, "request": str(rid),
                      "requested_by": str(req.requested_by)})
        # The file copy is written before commit: a crash after it but before commit makes a
        # restore re-shred a student the DB still has — the safe direction.
        if not already:
            _append_ledger_file(ctx, record.to_ledger_dict())
        uow.commit()
    ctx.keyring.keyring.clear()
    return {"request": str(rid), "student": str(record.student_id), "destroyed_keys": destroyed,
            "already": already}


def cancel_erasure(ctx: ServiceContext, actor: Actor, request_id: uuid.UUID | str) -> dict[str, Any]:
    """Close a pending request without destroying anything: ``cancelled`` when the requester does
    it, ``rejected`` when another authorised user does."""
    rid = id_or_404(request_id, "erasure request")
    now = ctx.now()
    with ctx.uow() as uow:
        s = uow.session
        req, _student = _request_in_reach(ctx, uow, actor, rid)
        status = "cancelled" if req.requested_by == actor.user_id else "rejected"
        n = cast(sa.CursorResult, s.execute(
            sa.update(ErasureRequest).where(ErasureRequest.id == rid, ErasureRequest.status == "pending")
            .values(status=status, decided_by=actor.user_id, decided_at=now))).rowcount
        if n != 1:
            raise InvalidTransition(f"the erasure request is {req.status}")
        audit.record(ctx, s, actor, f"keys:erasure_{status}", "erasure_request", rid, {"student": str(req.student_id)})
        uow.commit()
        return {"request": str(rid), "status": status}


def pending_erasures(ctx: ServiceContext, actor: Actor) -> list[dict[str, Any]]:
    """Pending, unexpired requests the actor could approve or cancel (ids, codes and times only)."""
    now = ctx.now()
    with ctx.uow() as uow:
        s = uow.session
        _require_eraser(ctx, uow, actor, None)
        _expire_stale(ctx, s, now)
        rows = list(s.scalars(sa.select(ErasureRequest).where(ErasureRequest.status == "pending")
                              .order_by(ErasureRequest.requested_at, ErasureRequest.id)))
        out = []
        for r in rows:
            try:
                _reach_student(s, actor, r.student_id)
            except NotFound:
                continue
            out.append(_request_view(r))
        uow.commit()
        return out


def replay_ledger(ctx: ServiceContext, extra: list[dict[str, str]] | None = None) -> int:
    """Re-apply every erasure (file ledger ∪ ``extra``) to the current database. Idempotent."""
    entries = list({e["student_id"]: e for e in read_ledger_file(ctx) + (extra or [])}.values())
    now = ctx.now()
    replayed = 0
    with ctx.uow() as uow:
        s = uow.session
        for e in entries:
            sid = uuid.UUID(e["student_id"])
            if s.get(Student, sid) is None:
                continue
            replayed += _destroy_in(s, sid, now)
            if not s.scalar(sa.select(ErasureLedger.id).where(ErasureLedger.student_id == sid)):
                s.add(ErasureLedger(student_id=sid, erased_at=datetime.fromisoformat(e["erased_at"]), erased_by=None,
                                    reason_code=e.get("reason_code") or e.get("reason") or "replayed"))
        if entries:
            audit.record(ctx, s, None, "keys:ledger_replayed", "erasure_ledger", None,
                         {"entries": len(entries), "keys_destroyed": replayed})
        uow.commit()
    ctx.keyring.keyring.clear()
    return replayed


# ---- backups ---------------------------------------------------------------------------------

def _database(url: sa.URL) -> str:
    """The database name (SQLite: file path) of the URL; backups need one."""
    if url.database is None:
        raise ValidationFailed("the database URL names no database")
    return url.database


def create_backup(ctx: ServiceContext, dest: str) -> pathlib.Path:
    """A consistent copy of the database: SQLite's online backup API, or pg_dump -Fc."""
    url = ctx.engine.url
    p = pathlib.Path(dest)
    p.parent.mkdir(parents=True, exist_ok=True)
    if url.get_backend_name() == "sqlite":
        src = sqlite3.connect(_database(url))
        out = sqlite3.connect(str(p))
        with out:
            src.backup(out)
        src.close()
        out.close()
    else:
        _pg(["pg_dump", "-Fc", "-f", str(p)], url)
    os.chmod(p, 0o600)
    return p


def restore_backup(ctx: ServiceContext, src: str) -> dict[str, int]:
    """Replace the database with a backup, then replay the erasure ledger so no erased student
    comes back. The ledger entries of the database being replaced are carried over too."""
    extra: list[dict[str, str]] = []
    try:
        with ctx.uow() as uow:
            extra = [{"student_id": str(r.student_id), "erased_at": r.erased_at.isoformat(), "reason": r.reason_code}
                     for r in uow.session.scalars(sa.select(ErasureLedger))]
    except sa.exc.SQLAlchemyError:
        extra = []
    url = ctx.engine.url
    ctx.engine.dispose()
    if not pathlib.Path(src).is_file():
        raise ValidationFailed(f"no backup file at {src}")
    if url.get_backend_name() == "sqlite":
        for suffix in ("-wal", "-shm"):
            pathlib.Path(_database(url) + suffix).unlink(missing_ok=True)
        shutil.copyfile(src, _database(url))
    else:
        _pg(["pg_restore", "--clean", "--if-exists", "--no-owner", "-d", _database(url), src], url)
    ctx.keyring.keyring.clear()
    ctx.keyring._system_cache.clear()
    ctx.keyring._indexer = None
    from mh_platform.services.keys import bootstrap_keys

    bootstrap_keys(ctx)
    return {"keys_destroyed_on_replay": replay_ledger(ctx, extra)}


def _pg(cmd: list[str], url: sa.URL) -> None:
    env_ = dict(os.environ)
    if url.password:
        env_["PGPASSWORD"] = url.password
    args = cmd + ["-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U", url.username or "postgres"]
    if cmd[0] == "pg_dump":
        args.append(_database(url))
    res = subprocess.run(args, env=env_, capture_output=True, text=True, timeout=3600)  # noqa: S603
    if res.returncode != 0:
        raise ValidationFailed(f"{cmd[0]} failed: {res.stderr.strip()[:300]}")


def iter_envelope_values(ctx: ServiceContext) -> Iterator[tuple[str, str, Any, bytes]]:
    """(table, column, row id, envelope) of every stored envelope (for checks)."""
    with ctx.uow() as uow:
        for table, col in envelope_columns():
            for row_id, blob in uow.session.execute(sa.select(table.c.id, col).where(col.is_not(None))):
                yield table.name, col.name, row_id, blob
