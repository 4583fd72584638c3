"""Hash-chained, keyed-MAC audit records and their verification (pure).

Each record is ``(seq, data, prev_mac, mac)`` with::

    mac = HMAC-SHA256(k_log, "mhp-audit-chain-v1\\n" ‖ canonical_json({"prev_mac": hex|null,
                                                                     "record": {"seq": seq, **data}}))

* ``seq`` is gapless and starts at ``GENESIS_SEQ`` (1); the genesis record has ``prev_mac`` None.
* Because ``seq`` and ``prev_mac`` are inside the MAC'd content, editing, deleting, reordering or
  inserting a record breaks verification at the first affected position; because the MAC is
  keyed, a database-only attacker cannot recompute the chain after editing.
* A pure chain cannot see the tail being cut off, or a full rewrite by someone holding the key:
  ``verify`` compares against an *anchor* — the latest (seq, mac) checkpoint kept outside the
  database (optionally Ed25519-signed with ``sign_checkpoint``).
* Canonical JSON: sorted keys, no whitespace, UTF-8 (not ASCII-escaped), no NaN/Infinity, only
  str keys and JSON types — the same dict always gives the same bytes.

**Rule: records contain no plaintext of sensitive fields** — no names, ID/student numbers,
phones, answers, notes, plans, reasons or clinical text. Refer to objects by UUID, fields by
name, and use codes. ``link`` refuses records with keys from ``SENSITIVE_KEYS`` as a guard-rail;
it cannot catch sensitive text hidden under an innocent key, so callers must not put it there.

Pure: no I/O, no clock (timestamps come in as ISO strings in ``data``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from hmac import compare_digest
from hmac import digest as hmac_digest
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

GENESIS_SEQ = 1
MAC_LEN = 32
MIN_KEY_LEN = 32
_DOMAIN = b"mhp-audit-chain-v1\n"
_CHECKPOINT_DOMAIN = b"mhp-audit-checkpoint-v1\n"
_ENTRY_DOMAIN = b"mhp-audit-entry-v1\n"
_RESERVED = frozenset({"prev_mac", "mac"})

SENSITIVE_KEYS = frozenset(
    {
        "name",
        "full_name",
        "student_name",
        "guardian_name",
        "id_number",
        "student_number",
        "phone",
        "guardian_phone",
        "address",
        "answer",
        "answers",
        "note",
        "notes",
        "text",
        "free_text",
        "plan_text",
        "reason_text",
        "feedback",
        "diagnosis",
        "plaintext",
        "password",
        "token",
        "secret",
    }
)
"""Keys refused anywhere inside an audit record (guard-rail for the no-plaintext rule)."""


class ChainError(ValueError):
    """A record cannot be MAC'd: bad types, reserved or sensitive keys, bad key or prev_mac."""


class SensitiveFieldInRecord(ChainError):
    """A key from ``SENSITIVE_KEYS`` appears in an audit record."""


def _check_json(value: Any, path: str) -> None:
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ChainError(f"{path}: NaN/Infinity cannot be encoded canonically")
        return
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_json(v, f"{path}[{i}]")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ChainError(f"{path}: keys must be strings")
            if k.lower() in SENSITIVE_KEYS:
                raise SensitiveFieldInRecord(
                    f"{path}.{k}: sensitive field names are not allowed in audit records"
                )
            _check_json(v, f"{path}.{k}")
        return
    raise ChainError(f"{path}: {type(value).__name__} is not a JSON type (pass ISO strings for times)")


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes: sorted keys, compact, UTF-8, finite numbers, str keys only."""
    _check_json(value, "$")
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes) or len(key) < MIN_KEY_LEN:
        raise ChainError("audit MAC key must be at least 32 bytes")


def link(prev_mac: bytes | None, record: Mapping[str, Any], key: bytes) -> bytes:
    """The MAC of ``record`` (which must hold an int ``"seq"`` ≥ 1) chained to ``prev_mac``."""
    _check_key(key)
    if prev_mac is not None and (not isinstance(prev_mac, bytes) or len(prev_mac) != MAC_LEN):
        raise ChainError("prev_mac must be None or 32 bytes")
    if not isinstance(record, Mapping):
        raise ChainError("record must be a mapping")
    seq = record.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < GENESIS_SEQ:
        raise ChainError("record needs an integer 'seq' >= 1")
    if _RESERVED & set(record):
        raise ChainError("'prev_mac' and 'mac' are reserved and must not be in the record")
    content = canonical_json(
        {"prev_mac": prev_mac.hex() if prev_mac is not None else None, "record": dict(record)}
    )
    return hmac_digest(key, _DOMAIN + content, "sha256")


def entry_mac(data: Mapping[str, Any], key: bytes) -> bytes:
    """The MAC of one not-yet-sequenced entry (no seq, no prev_mac), computed when it is recorded.

    Deferred sequencing (the writer inserts, a sequencer chains later) would otherwise let a
    database-only attacker insert or edit a pending entry and have the sequencer chain it: the
    sequencer chains only entries whose ``entry_mac`` checks (``entry_ok``)."""
    _check_key(key)
    if not isinstance(data, Mapping):
        raise ChainError("record must be a mapping")
    if (_RESERVED | {"seq"}) & set(data):
        raise ChainError("'seq', 'prev_mac' and 'mac' are assigned when the entry is chained")
    return hmac_digest(key, _ENTRY_DOMAIN + canonical_json(dict(data)), "sha256")  # HMAC-SHA256, one C call


def entry_ok(data: Mapping[str, Any], mac: bytes | None, key: bytes) -> bool:
    """True when ``mac`` is ``entry_mac(data, key)`` (False for a missing or malformed MAC)."""
    if not isinstance(mac, bytes) or len(mac) != MAC_LEN:
        return False
    try:
        return compare_digest(entry_mac(data, key), mac)
    except ChainError:
        return False


@dataclass(frozen=True)
class ChainRecord:
    """One stored audit record. ``data`` excludes ``seq``, ``prev_mac`` and ``mac``."""

    seq: int
    data: Mapping[str, Any]
    prev_mac: bytes | None
    mac: bytes

    def content(self) -> dict[str, Any]:
        """The MAC'd record: ``{"seq": seq, **data}``."""
        return {**self.data, "seq": self.seq}


@dataclass(frozen=True)
class Checkpoint:
    """An anchor: the chain head (seq, mac) at some moment, stored outside the database."""

    seq: int
    mac: bytes

    def signing_payload(self) -> bytes:
        return _CHECKPOINT_DOMAIN + canonical_json({"mac": self.mac.hex(), "seq": self.seq})


def append(prev: ChainRecord | Checkpoint | None, data: Mapping[str, Any], key: bytes) -> ChainRecord:
    """The next record after ``prev`` (None = genesis). The caller serialises appends (chain-head
    row ``SELECT … FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite)."""
    if "seq" in data:
        raise ChainError("'seq' is assigned by append, not passed in data")
    seq = prev.seq + 1 if prev is not None else GENESIS_SEQ
    prev_mac = prev.mac if prev is not None else None
    mac = link(prev_mac, {**data, "seq": seq}, key)
    return ChainRecord(seq, dict(data), prev_mac, mac)


def head(record: ChainRecord) -> Checkpoint:
    """The checkpoint for a chain whose last record is ``record``."""
    return Checkpoint(record.seq, record.mac)


def sign_checkpoint(checkpoint: Checkpoint, private_key: Ed25519PrivateKey) -> bytes:
    """Ed25519 signature of a checkpoint (key held by the app, not the DB; ship off-box)."""
    return private_key.sign(checkpoint.signing_payload())


def verify_checkpoint_signature(
    checkpoint: Checkpoint, signature: bytes, public_key: Ed25519PublicKey
) -> bool:
    try:
        public_key.verify(signature, checkpoint.signing_payload())
    except InvalidSignature:
        return False
    return True


class Failure(StrEnum):
    """Why verification stopped."""

    EDITED = "edited"  # MAC does not match the content (content, seq, prev_mac or mac changed)
    DELETED = "deleted"  # a gap in seq
    REORDERED = "reordered"  # the expected seq appears later in the sequence
    DUPLICATED = "duplicated"  # a seq already verified appears again
    TRUNCATED = "truncated"  # the chain ends before the anchor's seq
    BAD_GENESIS = "bad_genesis"  # first record is not seq 1 with prev_mac None
    BROKEN_LINK = "broken_link"  # valid MAC but prev_mac is not the previous record's mac (splice/fork)
    ANCHOR_MISMATCH = "anchor_mismatch"  # record at the anchor's seq has another mac (rewritten history)
    MALFORMED = "malformed"  # not a ChainRecord / bad field types


@dataclass(frozen=True)
class VerifyReport:
    """Outcome of ``verify``. On failure ``index`` is the 0-based position in the input of the
    first bad entry (for truncation: the number of records, i.e. where the missing ones would
    be), ``seq`` the seq found there (None if none), ``expected_seq`` the seq that should be there.
    ``last_good`` is the checkpoint of the last verified record."""

    ok: bool
    checked: int
    last_good: Checkpoint | None
    reason: Failure | None = None
    index: int | None = None
    seq: int | None = None
    expected_seq: int | None = None
    detail: str = ""

    def __bool__(self) -> bool:
        return self.ok

    def summary(self) -> str:
        """One line for the CLI."""
        if self.ok:
            last = self.last_good.seq if self.last_good else "-"
            return f"audit chain OK: {self.checked} records verified, head seq {last}"
        reason = self.reason.value if self.reason else "?"
        return (
            f"audit chain BROKEN at entry #{self.index} (seq {self.seq}, expected {self.expected_seq}): "
            f"{reason} — {self.detail}"
        )


def _valid_shape(rec: Any) -> bool:
    return (
        isinstance(rec, ChainRecord)
        and isinstance(rec.seq, int)
        and not isinstance(rec.seq, bool)
        and isinstance(rec.mac, bytes)
        and len(rec.mac) == MAC_LEN
        and (rec.prev_mac is None or (isinstance(rec.prev_mac, bytes) and len(rec.prev_mac) == MAC_LEN))
        and isinstance(rec.data, Mapping)
    )


def _same_mac(a: bytes | None, b: bytes | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return compare_digest(a, b)


def _rest_seqs(it: Iterator[Any]) -> set[int]:
    return {r.seq for r in it if isinstance(r, ChainRecord) and isinstance(r.seq, int)}


def verify(
    records: Iterable[ChainRecord],
    key: bytes,
    *,
    anchor: Checkpoint | None = None,
    start_after: Checkpoint | None = None,
) -> VerifyReport:
    """Recompute the chain in input order (the caller passes records ordered by storage position,
    e.g. ``ORDER BY id``, or by seq) and report the first bad entry.

    ``start_after`` verifies a segment that continues an earlier, already verified checkpoint
    (archived segments). ``anchor`` is the latest trusted checkpoint: a chain ending before it is
    TRUNCATED, and a record at its seq with another mac is ANCHOR_MISMATCH. Streams the input and
    only buffers the remaining seq numbers once a seq anomaly is found.
    """
    _check_key(key)
    expected_seq = start_after.seq + 1 if start_after else GENESIS_SEQ
    expected_prev = start_after.mac if start_after else None
    last = start_after
    checked = 0

    def fail(reason: Failure, index: int, seq: int | None, detail: str) -> VerifyReport:
        return VerifyReport(False, checked, last, reason, index, seq, expected_seq, detail)

    it = iter(records)
    for index, rec in enumerate(it):
        if not _valid_shape(rec):
            return fail(Failure.MALFORMED, index, getattr(rec, "seq", None), "record has bad field types")
        if rec.seq != expected_seq:
            if index == 0 and start_after is None and rec.seq < GENESIS_SEQ:
                return fail(Failure.BAD_GENESIS, index, rec.seq, f"chain must start at seq {GENESIS_SEQ}")
            if rec.seq < expected_seq:
                return fail(Failure.DUPLICATED, index, rec.seq, f"seq {rec.seq} was already verified")
            rest = _rest_seqs(it)
            if expected_seq in rest:
                return fail(Failure.REORDERED, index, rec.seq, f"seq {expected_seq} appears later in the log")
            missing = (
                f"seq {expected_seq}"
                if rec.seq == expected_seq + 1
                else f"seqs {expected_seq}..{rec.seq - 1}"
            )
            return fail(Failure.DELETED, index, rec.seq, f"{missing} missing")
        if index == 0 and start_after is None and rec.prev_mac is not None:
            return fail(Failure.BAD_GENESIS, index, rec.seq, "genesis record must have no prev_mac")
        try:
            want = link(rec.prev_mac, rec.content(), key)
        except ChainError as exc:
            return fail(Failure.MALFORMED, index, rec.seq, str(exc))
        if not compare_digest(want, rec.mac):
            return fail(Failure.EDITED, index, rec.seq, "MAC does not match the record content")
        if not _same_mac(rec.prev_mac, expected_prev):
            what = "the start checkpoint" if index == 0 else "the previous record"
            return fail(Failure.BROKEN_LINK, index, rec.seq, f"prev_mac does not match {what}")
        if anchor is not None and rec.seq == anchor.seq and not compare_digest(rec.mac, anchor.mac):
            return fail(
                Failure.ANCHOR_MISMATCH, index, rec.seq, "record differs from the anchored checkpoint"
            )
        checked += 1
        last = Checkpoint(rec.seq, rec.mac)
        expected_seq = rec.seq + 1
        expected_prev = rec.mac

    if anchor is not None:
        end = last.seq if last is not None else GENESIS_SEQ - 1
        if end < anchor.seq:
            return VerifyReport(
                False,
                checked,
                last,
                Failure.TRUNCATED,
                checked,
                None,
                expected_seq,
                f"log ends at seq {end} but the anchor is at seq {anchor.seq}",
            )
        if (
            start_after is not None
            and anchor.seq == start_after.seq
            and not compare_digest(anchor.mac, start_after.mac)
        ):
            return VerifyReport(
                False,
                checked,
                last,
                Failure.ANCHOR_MISMATCH,
                0,
                None,
                start_after.seq,
                "start checkpoint differs from anchor",
            )
    return VerifyReport(True, checked, last)
