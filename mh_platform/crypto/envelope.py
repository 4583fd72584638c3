"""AES-256-GCM field envelope, versioned and bound to (table, column, row).

Layout of format version 1 (stored as BLOB / bytea, never as text)::

    offset  size  field
    0       1     format version = 0x01 (the version fixes the suite: AES-256-GCM, 16-byte
                  key id, 12-byte nonce, 16-byte tag; 0x02 is reserved for SM4-GCM and
                  0x03 for XAES-256-GCM)
    1       16    key id (UUID bytes of the data key)
    17      12    nonce (96 random bits from os.urandom, fresh for every seal)
    29      n+16  AES-256-GCM ciphertext of the inner plaintext, then the tag

GCM associated data = the 17 header bytes ‖ ``AAD.encode()``. So the header is authenticated
(unlike Tink's prefix) and a value copied to another table, column or row — or relabelled with
another key id — fails with ``TamperedOrMisbound``.

Inner plaintext = kind byte ‖ payload [‖ padding]: kind 0x00 bytes / 0x01 UTF-8 text, bit 0x80
set when padded (ISO/IEC 7816-4: 0x80 then zeros up to a multiple of ``pad_to``). The kind stops
type confusion on read; padding hides the exact length of free text.

Invariants: the key is chosen by the id in the header, never by trying keys; every failure is an
``EnvelopeError`` subclass whose message holds no plaintext and no key material; nothing here
reads the clock or does I/O.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple
from uuid import UUID

from cryptography.exceptions import InvalidTag

from mh_platform.crypto.keyring import DataKey, KeyringError

FORMAT_V1 = 0x01
SUPPORTED_VERSIONS = frozenset({FORMAT_V1})
KEY_ID_LEN = 16
NONCE_LEN = 12
TAG_LEN = 16
HEADER_LEN = 1 + KEY_ID_LEN
OVERHEAD = HEADER_LEN + NONCE_LEN + TAG_LEN + 1  # + the inner kind byte
MIN_LEN = OVERHEAD

_KIND_BYTES = 0x00
_KIND_TEXT = 0x01
_PADDED = 0x80
_AAD_TAG = b"mhp-field-aad-v1"

PAD_FREE_TEXT = 256
"""Suggested ``pad_to`` for free-text notes (hides length to 256-byte buckets)."""


# --------------------------------------------------------------------------- errors


class EnvelopeError(Exception):
    """Base of every envelope failure. Never carries plaintext or key material."""

    code = "envelope_error"


class Malformed(EnvelopeError):
    """Not an envelope: wrong type, too short, or an inner encoding that does not parse."""

    code = "envelope_malformed"


class UnsupportedVersion(EnvelopeError):
    """The format version byte is not one this code can open."""

    code = "envelope_unsupported_version"

    def __init__(self, version: int) -> None:
        super().__init__(f"unsupported envelope format version {version}")
        self.version = version


class UnknownKey(EnvelopeError):
    """The key id in the header is not known to the key lookup."""

    code = "envelope_unknown_key"

    def __init__(self, key_id: UUID, message: str | None = None) -> None:
        super().__init__(message or f"unknown data key {key_id}")
        self.key_id = key_id
        self.cause_code: str | None = None


class KeyShredded(UnknownKey):
    """The key existed and was destroyed (crypto-shredding): the value is gone for good."""

    code = "envelope_key_shredded"

    def __init__(self, key_id: UUID) -> None:
        super().__init__(key_id, f"data key {key_id} has been destroyed")


class TamperedOrMisbound(EnvelopeError):
    """Authentication failed: the bytes were changed, or the value belongs to another
    table/column/row (a swap). The two cannot be told apart, by design. Raise a security event."""

    code = "envelope_tampered_or_misbound"

    def __init__(self, aad: AAD, key_id: UUID) -> None:
        super().__init__(f"envelope for {aad.table}.{aad.column} row {aad.row_id} failed authentication")
        self.aad = aad
        self.key_id = key_id


# --------------------------------------------------------------------------- types


@dataclass(frozen=True)
class AAD:
    """Where a value lives: its logical table, column and the row's application-assigned UUID.

    Use stable *logical* names (renaming a SQL table must not change them) and UUIDs that exist
    before encryption and are never reused — not autoincrement integers.
    """

    table: str
    column: str
    row_id: UUID

    def __post_init__(self) -> None:
        for name in ("table", "column"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or len(value) > 255:
                raise ValueError(f"AAD {name} must be a non-empty string of at most 255 characters")
        if not isinstance(self.row_id, UUID):
            raise TypeError("AAD row_id must be a uuid.UUID")

    def encode(self) -> bytes:
        """Canonical, unambiguous bytes: tag ‖ len‖table ‖ len‖column ‖ 16-byte row UUID."""
        t = self.table.encode("utf-8")
        c = self.column.encode("utf-8")
        return _AAD_TAG + len(t).to_bytes(2, "big") + t + len(c).to_bytes(2, "big") + c + self.row_id.bytes


class Header(NamedTuple):
    """The unauthenticated-until-opened envelope prefix."""

    version: int
    key_id: UUID


KeyLookup = Callable[[UUID], DataKey | None]
"""Returns the data key with this id, or None. May raise ``KeyShredded`` (or ``KeyError``,
treated as unknown). A ``Keyring`` instance is a ``KeyLookup``."""


# --------------------------------------------------------------------------- inner encoding


def _encode_inner(plaintext: bytes | str, pad_to: int | None) -> bytes:
    if isinstance(plaintext, str):
        kind, payload = _KIND_TEXT, plaintext.encode("utf-8")
    elif isinstance(plaintext, bytes | bytearray | memoryview):
        kind, payload = _KIND_BYTES, bytes(plaintext)
    else:
        raise TypeError("plaintext must be bytes or str (serialise other types explicitly)")
    if pad_to is None:
        return bytes([kind]) + payload
    if not isinstance(pad_to, int) or pad_to < 2 or pad_to > 65536:
        raise ValueError("pad_to must be an int between 2 and 65536")
    body = bytes([kind | _PADDED]) + payload + b"\x80"
    return body + b"\x00" * (-len(body) % pad_to)


def _decode_inner(inner: bytes) -> tuple[int, bytes]:
    if not inner:
        raise Malformed("empty inner plaintext")
    flags, body = inner[0], inner[1:]
    kind = flags & ~_PADDED
    if kind not in (_KIND_BYTES, _KIND_TEXT):
        raise Malformed("unknown inner plaintext kind")
    if flags & _PADDED:
        stripped = body.rstrip(b"\x00")
        if not stripped or stripped[-1] != 0x80:
            raise Malformed("bad padding")
        body = stripped[:-1]
    return kind, body


# --------------------------------------------------------------------------- API


def parse_header(envelope: bytes | bytearray | memoryview) -> Header:
    """Version and key id without decrypting (re-encryption uses it to find rows on old keys).

    Not authenticated: use it to choose work, never to decide trust.
    """
    if not isinstance(envelope, bytes | bytearray | memoryview):
        raise Malformed("envelope must be bytes")
    data = bytes(envelope)
    if not data:
        raise Malformed("empty envelope")
    if data[0] not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(data[0])
    if len(data) < MIN_LEN:
        raise Malformed("envelope too short")
    return Header(data[0], UUID(bytes=data[1:HEADER_LEN]))


def seal(key: DataKey, plaintext: bytes | str, aad: AAD, *, pad_to: int | None = None) -> bytes:
    """Encrypt ``plaintext`` under ``key`` for the place ``aad`` names. Fresh random nonce.

    ``str`` is stored as UTF-8 text and ``bytes`` as bytes; ``open_text`` refuses bytes. Only
    keys whose purpose is field encryption (student/system) are accepted.
    """
    if not isinstance(key, DataKey):
        raise TypeError("key must be a DataKey")
    if not key.purpose.encrypts_fields:
        raise ValueError(f"a {key.purpose.value} key must not encrypt fields")
    if not isinstance(aad, AAD):
        raise TypeError("aad must be an AAD")
    header = bytes([FORMAT_V1]) + key.key_id.bytes
    nonce = os.urandom(NONCE_LEN)
    ct = key.aead().encrypt(nonce, _encode_inner(plaintext, pad_to), header + aad.encode())
    return header + nonce + ct


def seal_many(items: Iterable[tuple[DataKey, UUID | bytes, str]], *, table: str, column: str) -> list[bytes]:
    """``seal`` for many text values of one (table, column): ``(key, row id, text)`` → envelopes.

    Bulk paths (paper import). The output is exactly what ``seal(key, text, AAD(table, column,
    row_id))`` gives: same header, inner encoding and AAD, a fresh random nonce per value (all the
    nonces of a batch come from one ``os.urandom`` call). The row id may be given as its 16 UUID
    bytes. Each key is checked once per batch; no padding (use ``seal`` for free text).
    """
    AAD(table, column, UUID(int=0))  # the same checks on the names as a single seal
    t, c = table.encode("utf-8"), column.encode("utf-8")
    prefix = _AAD_TAG + len(t).to_bytes(2, "big") + t + len(c).to_bytes(2, "big") + c
    batch = items if isinstance(items, list) else list(items)
    nonces = os.urandom(NONCE_LEN * len(batch))
    per_key: dict[int, tuple[bytes, bytes, Callable[..., bytes]]] = {}
    out: list[bytes] = []
    append = out.append
    kind = bytes([_KIND_TEXT])
    at = 0
    for key, row_id, text in batch:
        pk = per_key.get(id(key))
        if pk is None:
            if not isinstance(key, DataKey):
                raise TypeError("key must be a DataKey")
            if not key.purpose.encrypts_fields:
                raise ValueError(f"a {key.purpose.value} key must not encrypt fields")
            header = bytes([FORMAT_V1]) + key.key_id.bytes
            pk = per_key[id(key)] = (header, header + prefix, key.aead().encrypt)
        rid = row_id if type(row_id) is bytes else row_id.bytes if isinstance(row_id, UUID) else None
        if rid is None or len(rid) != 16:
            raise TypeError("row id must be a uuid.UUID or its 16 bytes")
        if type(text) is not str:
            raise TypeError("seal_many seals text values")
        nonce = nonces[at:at + NONCE_LEN]
        at += NONCE_LEN
        append(pk[0] + nonce + pk[2](nonce, kind + text.encode("utf-8"), pk[1] + rid))
    return out


def _open(key_lookup: KeyLookup, envelope: bytes | bytearray | memoryview, aad: AAD) -> tuple[int, bytes]:
    if not isinstance(aad, AAD):
        raise TypeError("aad must be an AAD")
    header = parse_header(envelope)
    data = bytes(envelope)
    try:
        key = key_lookup(header.key_id)
    except KeyShredded:
        raise
    except KeyError:
        key = None
    except KeyringError as exc:
        # The wrapped key did not unwrap (tampered key row, unknown master): still an
        # envelope failure for the caller; the specific cause stays in __cause__ / .cause_code.
        err = UnknownKey(header.key_id, f"data key {header.key_id} is unavailable ({exc.code})")
        err.cause_code = exc.code
        raise err from exc
    if key is None:
        raise UnknownKey(header.key_id)
    if key.key_id != header.key_id or not key.purpose.encrypts_fields:
        # A lookup bug; never fall back to another key.
        raise UnknownKey(header.key_id, f"key lookup returned an unusable key for {header.key_id}")
    nonce = data[HEADER_LEN : HEADER_LEN + NONCE_LEN]
    try:
        inner = key.aead().decrypt(
            nonce, data[HEADER_LEN + NONCE_LEN :], data[:HEADER_LEN] + aad.encode()
        )
    except InvalidTag:
        raise TamperedOrMisbound(aad, header.key_id) from None
    return _decode_inner(inner)


def open_(key_lookup: KeyLookup, envelope: bytes | bytearray | memoryview, aad: AAD) -> bytes:
    """Authenticate and decrypt; returns the payload bytes (UTF-8 for text values).

    Raises ``Malformed``, ``UnsupportedVersion``, ``UnknownKey`` / ``KeyShredded`` or
    ``TamperedOrMisbound``; never returns unauthenticated data.
    """
    return _open(key_lookup, envelope, aad)[1]


def open_text(key_lookup: KeyLookup, envelope: bytes | bytearray | memoryview, aad: AAD) -> str:
    """Like ``open_`` for values sealed from ``str``; ``Malformed`` if the value was bytes."""
    kind, payload = _open(key_lookup, envelope, aad)
    if kind != _KIND_TEXT:
        raise Malformed("envelope holds bytes, not text")
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Malformed("text payload is not UTF-8") from None


def reseal(
    key_lookup: KeyLookup,
    envelope: bytes | bytearray | memoryview,
    aad: AAD,
    new_key: DataKey,
    *,
    pad_to: int | None = None,
) -> bytes:
    """Re-encryption step: open under the key the header names, seal under ``new_key`` with a
    fresh nonce. Text stays text. Write back with compare-and-swap on the old envelope."""
    kind, payload = _open(key_lookup, envelope, aad)
    value: bytes | str = payload.decode("utf-8") if kind == _KIND_TEXT else payload
    return seal(new_key, value, aad, pad_to=pad_to)


def is_on_key(envelope: bytes | bytearray | memoryview, key_id: UUID) -> bool:
    """True when the envelope's header names ``key_id`` (cheap; no decryption)."""
    return parse_header(envelope).key_id == key_id
