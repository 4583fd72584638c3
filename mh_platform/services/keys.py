"""Key management for the running process: the master key set, data keys in the database,
field sealing/opening, blind indexes and the audit-chain key.

Field values are sealed with ``seal`` in the caller's session (the data key row is read or
created there, so no second connection is ever needed inside a transaction). Opening for a
*person* goes through ``services.disclosure`` which also writes the access log; ``open_field`` here
is for system work (scoring, re-encryption) that no person sees.
"""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.crypto import envelope as env
from mh_platform.crypto import keyring as kr
from mh_platform.db.bulk import IdReader, in_chunks
from mh_platform.db.models import DataKey, Setting

if TYPE_CHECKING:
    from mh_platform.crypto.blind_index import BlindIndexer

KCV_SETTING = "master_key_check_values"


def write_new_master_key_file(path: str) -> str:
    """Create a new 0600 master key file; returns the key id."""
    return kr.generate_master_key_file(path)


_KEY_BY_ID = sa.select(DataKey.id, DataKey.purpose, DataKey.student_id, DataKey.master_key_id,
                       DataKey.wrapped).where(DataKey.id == sa.bindparam("kid", type_=sa.Uuid()))


def _session_keys(s: Session) -> dict[uuid.UUID, kr.DataKey]:
    """Unwrapped student keys of this session. Per session: a key created in a transaction that
    rolls back must not outlive it."""
    return s.info.setdefault("mhp_student_keys", {})


def _wrapped(row: Any) -> kr.WrappedDataKey:  # a DataKey, or a row of its columns
    if row.wrapped is None:
        raise env.KeyShredded(row.id)
    return kr.WrappedDataKey(row.id, kr.KeyPurpose(row.purpose), row.student_id, row.master_key_id, row.wrapped)


class KeyService:
    """One per process. Holds the loaded masters and a cache of unwrapped data keys."""

    def __init__(self, masters: kr.MasterKeySet) -> None:
        self.keyring = kr.Keyring(masters)
        self._system_cache: dict[str, kr.DataKey] = {}
        self._indexer: BlindIndexer | None = None

    # ---- master keys -------------------------------------------------------------------------
    def verify_masters(self, s: Session) -> None:
        """Refuse a wrong master key (KCV mismatch); record the KCVs of new masters."""
        row = s.get(Setting, KCV_SETTING)
        recorded = {k: base64.b64decode(v) for k, v in (row.value if row else {}).items()}
        new = self.keyring.masters.verify_check_values(recorded)
        if new:
            values = dict(row.value) if row else {}
            for kid in new:
                values[kid] = base64.b64encode(self.keyring.masters.keys[kid].check_value()).decode()
            if row is None:
                s.add(Setting(key=KCV_SETTING, value=values))
            else:
                row.value = values

    # ---- data keys ---------------------------------------------------------------------------
    def _create(self, s: Session, purpose: kr.KeyPurpose, student_id: uuid.UUID | None, now) -> kr.DataKey:
        key, wrapped = self.keyring.create_data_key(purpose, student_id)
        s.add(DataKey(id=key.key_id, purpose=purpose.value, student_id=student_id, wrapped=wrapped.blob,
                      master_key_id=wrapped.master_key_id, active=True, created_at=now))
        return key

    def new_student_key_row(self, student_id: uuid.UUID, now) -> tuple[kr.DataKey, dict]:
        """A fresh student key and the ``data_key`` row to bulk-insert for it (bulk paths)."""
        key, wrapped = self.keyring.create_data_key(kr.KeyPurpose.STUDENT, student_id)
        return key, {"id": key.key_id, "purpose": "student", "student_id": student_id, "wrapped": wrapped.blob,
                     "master_key_id": wrapped.master_key_id, "active": True, "created_at": now,
                     "destroyed_at": None}

    @staticmethod
    def seal_with(key: kr.DataKey, *, table: str, column: str, row_id: uuid.UUID,
                  value: str | bytes | None, pad_to: int | None = None) -> bytes | None:
        """Seal with a key already in hand (bulk paths); same envelope and AAD as ``seal``."""
        if value is None:
            return None
        return env.seal(key, value, env.AAD(table, column, row_id), pad_to=pad_to)

    @staticmethod
    def seal_many_with(items: list[tuple[kr.DataKey, uuid.UUID | bytes, str]], *, table: str,
                       column: str) -> list[bytes]:
        """``seal_with`` for a batch of text values of one column (bulk paths); same envelopes."""
        return env.seal_many(items, table=table, column=column)

    def student_keys(self, s: Session, student_ids: list[uuid.UUID], now) -> dict[uuid.UUID, kr.DataKey]:
        """Many students' active keys at once (bulk paths): set-based look-ups (``db.bulk.in_chunks``),
        each key unwrapped once; a student who has no key yet gets one (as ``student_key`` would)."""
        out: dict[uuid.UUID, kr.DataKey] = {}
        uid = IdReader()
        cols = (DataKey.id, DataKey.purpose, uid.col(DataKey.student_id), DataKey.master_key_id, DataKey.wrapped)
        conn = s.connection()
        for cond in in_chunks(s, DataKey.student_id, student_ids):
            wrapped = []
            for kid, purpose, raw, mkid, blob in conn.execute(sa.select(*cols).where(cond, DataKey.active.is_(True))).all():
                if raw is None or blob is None:  # matched by student id, active: never shredded
                    raise ValueError(f"data key {kid}: an active student key without its student or material")
                # purpose and owner checked there (the owner is bound into the unwrap AAD)
                wrapped.append(kr.WrappedDataKey(kid, purpose, uid.to_uuid(raw), mkid, blob))
            for w, key in zip(wrapped, self.keyring.unwrap_many(wrapped), strict=True):
                out[cast(uuid.UUID, w.owner_id)] = key
        for sid in student_ids:
            if sid not in out:  # a student who never had a key yet (created on first use, as online)
                out[sid] = self.student_key(s, sid, now)
        return out

    def student_key(self, s: Session, student_id: uuid.UUID, now, *, create: bool = True) -> kr.DataKey:
        cache = _session_keys(s)
        hit = cache.get(student_id)
        if hit is not None:
            return hit
        key = self._student_key(s, student_id, now, create=create)
        cache[student_id] = key
        return key

    def prime_student_key(self, s: Session, student_id: uuid.UUID, key_id: uuid.UUID | None,
                          master_key_id: str | None, wrapped: bytes | None) -> None:
        """Put a student's active key, read by the caller's own query in this transaction (a join
        to ``data_key``), into the per-session cache, so ``seal`` does not look it up again. No
        active key (none yet, or shredded) primes nothing: ``seal`` then decides as usual."""
        cache = _session_keys(s)
        if student_id not in cache:
            key = self.unwrap_student_key(student_id, key_id, master_key_id, wrapped)
            if key is not None:
                cache[student_id] = key

    def unwrap_student_key(self, student_id: uuid.UUID, key_id: uuid.UUID | None, master_key_id: str | None,
                           wrapped: bytes | None) -> kr.DataKey | None:
        """A student's active key from a row the caller read itself (a join to ``data_key``), for work
        on a Core connection (no Session): unwrapped through the process cache, as ``prime_student_key``
        does. None when the row has no active key (none yet, or shredded): the caller then goes the
        Session way (``seal``), which creates the key or refuses a shredded one."""
        if key_id is None or wrapped is None or master_key_id is None:
            return None
        return self.keyring.unwrap(kr.WrappedDataKey(key_id, kr.KeyPurpose.STUDENT, student_id, master_key_id, wrapped))

    def _student_key(self, s: Session, student_id: uuid.UUID, now, *, create: bool) -> kr.DataKey:
        row = s.scalar(sa.select(DataKey).where(DataKey.student_id == student_id, DataKey.active.is_(True)))
        if row is None:
            if s.scalar(sa.select(DataKey.id).where(DataKey.student_id == student_id)) is not None:
                raise env.KeyShredded(student_id)  # every key of this student was destroyed
            if not create:
                raise env.UnknownKey(student_id)
            return self._create(s, kr.KeyPurpose.STUDENT, student_id, now)
        return self.keyring.unwrap(_wrapped(row))

    def system_key(self, s: Session, purpose: kr.KeyPurpose = kr.KeyPurpose.SYSTEM, now=None) -> kr.DataKey:
        cached = self._system_cache.get(purpose.value)
        if cached is not None:
            return cached
        row = s.scalar(sa.select(DataKey).where(DataKey.purpose == purpose.value, DataKey.student_id.is_(None),
                                                DataKey.active.is_(True)))
        if row is None:
            if now is None:
                raise env.UnknownKey(uuid.UUID(int=0), f"no active {purpose.value} key: run `mhp db upgrade`")
            key = self._create(s, purpose, None, now)
            s.flush()
        else:
            key = self.keyring.unwrap(_wrapped(row))
        self._system_cache[purpose.value] = key
        return key

    def _lookup_with(self, read_row: Callable[[uuid.UUID], Any]):
        """A key lookup for opening envelopes: the process cache, else the row ``read_row`` reads by id
        (a ``DataKey`` or a row of its columns), unwrapped."""
        def lookup(key_id: uuid.UUID) -> kr.DataKey | None:
            cached = self.keyring.lookup(key_id)
            if cached is not None:
                return cached
            row = read_row(key_id)
            if row is None:
                return None
            return self.keyring.unwrap(_wrapped(row))

        return lookup

    def _lookup_in(self, s: Session):
        return self._lookup_with(lambda key_id: s.get(DataKey, key_id))

    def _lookup_on(self, conn: sa.Connection):
        """``_lookup_in`` for a Core connection (no Session)."""
        return self._lookup_with(lambda key_id: conn.execute(_KEY_BY_ID, {"kid": key_id}).first())

    # ---- fields ------------------------------------------------------------------------------
    def seal(self, s: Session, *, table: str, column: str, row_id: uuid.UUID, value: str | bytes | None,
             student_id: uuid.UUID | None, now, pad_to: int | None = None) -> bytes | None:
        """Encrypt one field value for (table, column, row). Student data under the student's key."""
        if value is None:
            return None
        key = self.student_key(s, student_id, now) if student_id else self.system_key(s, now=now)
        return env.seal(key, value, env.AAD(table, column, row_id), pad_to=pad_to)

    def open_field(self, s: Session, envelope: bytes | None, *, table: str, column: str,
                   row_id: uuid.UUID) -> str | None:
        """Decrypt for system work (no person sees it). Raises crypto errors on tamper/misbind."""
        if envelope is None:
            return None
        return env.open_text(self._lookup_in(s), envelope, env.AAD(table, column, row_id))

    def open_field_on(self, conn: sa.Connection, envelope: bytes | None, *, table: str, column: str,
                      row_id: uuid.UUID) -> str | None:
        """``open_field`` in a transaction on a Core connection (no Session)."""
        if envelope is None:
            return None
        return env.open_text(self._lookup_on(conn), envelope, env.AAD(table, column, row_id))

    def open_bytes(self, s: Session, envelope: bytes | None, *, table: str, column: str,
                   row_id: uuid.UUID) -> bytes | None:
        if envelope is None:
            return None
        return env.open_(self._lookup_in(s), envelope, env.AAD(table, column, row_id))

    # ---- blind indexes and audit --------------------------------------------------------------
    def blind_index(self, s: Session, kind: str, value: str | None, now=None) -> bytes | None:
        if value is None or value == "":
            return None
        from mh_platform.crypto import blind_index as bi

        return self._blind_indexer(s, now).compute(bi.IndexKind(kind), value)

    def blind_indexes(self, s: Session, kind: str, values: list[str], now=None) -> list[bytes | None]:
        """``blind_index`` for many values (bulk look-ups); None for a value that does not normalise."""
        from mh_platform.crypto import blind_index as bi

        return self._blind_indexer(s, now).compute_many(bi.IndexKind(kind), values)

    def _blind_indexer(self, s: Session, now=None) -> BlindIndexer:  # noqa: ANN001
        if self._indexer is None:
            from mh_platform.crypto import blind_index as bi

            self._indexer = bi.BlindIndexer.from_data_key(self.system_key(s, kr.KeyPurpose.BLIND_INDEX, now=now))
        return self._indexer

    def audit_key(self, s: Session, now=None) -> bytes:
        return self.system_key(s, kr.KeyPurpose.AUDIT_MAC, now=now).material


def load_masters(settings: Any) -> kr.MasterKeySet:
    """The master key set from MHP_MASTER_KEY or the key file; refuses missing/insecure/malformed."""
    environ = dict(os.environ)
    if environ.get(kr.MASTER_KEY_ENV):
        return kr.load_master_key_set(environ)
    return kr.load_master_key_set({}, path=settings.master_key_file)


def attach(ctx: Any) -> None:
    """Give a service context its key service (call once per process)."""
    ctx.keyring = KeyService(load_masters(ctx.settings))


def bootstrap_keys(ctx: Any) -> None:
    """Verify the master key against the database and make sure the system keys exist (one transaction).

    Several processes may start at once: the loser of a race to create a system key retries and
    then finds the winner's key (the partial unique index allows one active key per purpose).
    """
    for attempt in range(3):
        try:
            with ctx.uow() as uow:
                ks: KeyService = ctx.keyring
                ks._system_cache.clear()
                ks.verify_masters(uow.session)
                now = ctx.now()
                for purpose in (kr.KeyPurpose.SYSTEM, kr.KeyPurpose.BLIND_INDEX, kr.KeyPurpose.AUDIT_MAC):
                    ks.system_key(uow.session, purpose, now=now)
                ctx.audit_key = ks.audit_key(uow.session)
                uow.session.flush()
                uow.commit()
            return
        except sa.exc.IntegrityError:
            if attempt == 2:
                raise
