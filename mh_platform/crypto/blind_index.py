"""HMAC-SHA256 blind indexes for exact-match look-ups of encrypted identifiers.

``index = HMAC-SHA256(k[kind, context], "mhp-bidx-v1" ‖ kind ‖ context ‖ normalise(kind, value))[:length]``

* The root key is its own secret (a ``KeyPurpose.BLIND_INDEX`` data key wrapped by the master,
  or an HKDF sub-key of the master); it never sits in the database in the clear. Per-(kind,
  context) keys are derived from it with HKDF, so the index of an ID number in
  ``student.id_number`` is unrelated to the same string in another column (domain separation
  by key *and* by message).
* **Never an unkeyed hash.** An 18-digit 身份证号 has a few million plausible values per cohort
  (region prefix, birth date, sequence, computed check digit); an unkeyed or leaked-key index is
  brute-forced in seconds.
* Normalisation happens before hashing, so ``"11010519491231002x"`` and
  ``"110105 19491231 002X"`` find the same row.

Truncation trade-off: the default is 16 bytes (128 bits). At that length collisions are
negligible (birthday bound ~2^64 values), so the index behaves as an exact equality index and
leaks exactly what deterministic encryption would: which rows share a value (equality), and
nothing else. Shorter indexes (down to 4 bytes) create deliberate false positives that blur
equality for low-cardinality data, at the cost that every lookup must post-filter by decrypting
the candidates; for unique identifiers like ID and student numbers that blurring buys little,
so 16 bytes is used and a unique constraint can go on the index column. Either way: no ranges,
no prefixes, no LIKE. Rotating the root key means recomputing every index (decrypt each row).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from enum import StrEnum

from mh_platform.crypto.keyring import KEY_BYTES, DataKey, KeyPurpose, derive_key, hmac_sha256

DEFAULT_LENGTH = 16
MIN_LENGTH = 4
MAX_LENGTH = 32

_SEPARATORS = re.compile(r"[\s\-‐‑‒–—―_.()（）/]+")
_ID18 = re.compile(r"^\d{17}[\dX]$")
_ID15 = re.compile(r"^\d{15}$")
_STUDENT_NO = re.compile(r"^[0-9A-Z]{1,32}$")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_CONTEXT = re.compile(r"^[a-z0-9_.]{1,128}$")


class IndexKind(StrEnum):
    """The identifiers that get blind indexes; each has its own normalisation."""

    ID_NUMBER = "id_number"  # 居民身份证号 (18 chars, or legacy 15 digits)
    STUDENT_NUMBER = "student_number"  # 全国学籍号 (e.g. "G" + ID number) or a school number
    PHONE = "phone"  # guardian phone


class InvalidIndexValue(ValueError):
    """The value cannot be normalised for this kind. The message never repeats the value."""


def _base(value: str) -> str:
    if not isinstance(value, str):
        raise InvalidIndexValue("value must be a string")
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", value)).upper()


def id_number_checksum_ok(normalised: str) -> bool:
    """ISO 7064 MOD 11-2 check character of an 18-character ID number (GB 11643)."""
    if not _ID18.fullmatch(normalised):
        return False
    total = sum(int(d) * w for d, w in zip(normalised[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == normalised[17]


def _normalise_phone(value: str) -> str:
    s = unicodedata.normalize("NFKC", value)
    s = _SEPARATORS.sub("", s)
    international = False
    if s.startswith("+"):
        s, international = s[1:], True
    elif s.startswith("00"):
        s, international = s[2:], True
    if not s.isdigit() or not s.isascii():
        raise InvalidIndexValue(
            "phone number may contain only digits, spaces, dashes, brackets and a leading +"
        )
    if international:
        if s.startswith("86"):
            s = s[2:]
        else:
            return "+" + s  # a foreign number must not collide with a domestic one
    elif len(s) == 13 and s.startswith("861"):
        s = s[2:]  # "86" + 11-digit mobile written without "+"
    if not 5 <= len(s) <= 15:
        raise InvalidIndexValue("phone number has an implausible length")
    return s


def normalise(kind: IndexKind, value: str) -> str:
    """Canonical form of ``value`` for ``kind``; ``InvalidIndexValue`` if it cannot be one.

    * ID number: NFKC, drop spaces/dashes/dots/brackets, upper-case (check character ``X``);
      must be 17 digits + digit/X, or 15 digits (legacy). The check character is *not* enforced
      here (look-ups must find mistyped legacy data too); use ``id_number_checksum_ok`` on import.
    * Student number: NFKC, drop separators, upper-case; 1–32 characters of [0-9A-Z].
    * Phone: NFKC, digits only; ``+86`` / ``0086`` / a bare ``86`` before an 11-digit mobile is
      removed; other international prefixes are kept as ``+<digits>``; 5–15 digits.
    """
    kind = IndexKind(kind)
    if kind is IndexKind.PHONE:
        if not isinstance(value, str):
            raise InvalidIndexValue("value must be a string")
        return _normalise_phone(value)
    s = _base(value)
    if kind is IndexKind.ID_NUMBER:
        if not (_ID18.fullmatch(s) or _ID15.fullmatch(s)):
            raise InvalidIndexValue("ID number must be 18 characters (17 digits + digit or X) or 15 digits")
        return s
    if not _STUDENT_NO.fullmatch(s):
        raise InvalidIndexValue("student number must be 1-32 letters or digits")
    return s


class BlindIndexer:
    """Computes blind indexes under one root key. Holds derived keys in memory only.

    Invariant: equal normalised values in the same (kind, context) give equal indexes;
    different contexts or kinds give unrelated indexes.
    """

    def __init__(self, root_key: bytes, *, length: int = DEFAULT_LENGTH) -> None:
        if not isinstance(root_key, bytes) or len(root_key) != KEY_BYTES:
            raise ValueError("blind-index root key must be 32 bytes")
        if not MIN_LENGTH <= length <= MAX_LENGTH:
            raise ValueError(f"length must be between {MIN_LENGTH} and {MAX_LENGTH}")
        self._root = root_key
        self._length = length
        self._keys: dict[tuple[str, str], bytes] = {}

    @classmethod
    def from_data_key(cls, key: DataKey, *, length: int = DEFAULT_LENGTH) -> BlindIndexer:
        """From the wrapped-in-DB blind-index root key (purpose must be BLIND_INDEX)."""
        if key.purpose is not KeyPurpose.BLIND_INDEX:
            raise ValueError("a blind indexer needs a blind_index key")
        return cls(key.material, length=length)

    @classmethod
    def from_master_material(cls, master_material: bytes, *, length: int = DEFAULT_LENGTH) -> BlindIndexer:
        """From an HKDF sub-key of a master key (then master rotation means recomputing indexes)."""
        return cls(derive_key(master_material, "blind-index-root"), length=length)

    @property
    def length(self) -> int:
        return self._length

    def _key(self, kind: IndexKind, context: str) -> bytes:
        k = self._keys.get((kind.value, context))
        if k is None:
            k = derive_key(self._root, f"blind-index/{kind.value}/{context}")
            self._keys[(kind.value, context)] = k
        return k

    def compute(self, kind: IndexKind, value: str, *, context: str | None = None) -> bytes:
        """The index of ``value``. ``context`` names the column (e.g. ``"guardian.phone"``);
        defaults to the kind. ``InvalidIndexValue`` if ``value`` does not normalise."""
        kind = IndexKind(kind)
        ctx = context if context is not None else kind.value
        if not _CONTEXT.fullmatch(ctx):
            raise ValueError("context must be 1-128 characters of [a-z0-9_.]")
        norm = normalise(kind, value).encode("utf-8")
        message = b"mhp-bidx-v1\x00" + kind.value.encode() + b"\x00" + ctx.encode() + b"\x00" + norm
        return hmac_sha256(self._key(kind, ctx), message)[: self._length]

    def compute_many(self, kind: IndexKind, values: Iterable[str], *, context: str | None = None
                     ) -> list[bytes | None]:
        """``compute`` for many values of one kind (bulk look-ups): the key and message prefix are
        prepared once; a value that does not normalise gives None instead of raising."""
        kind = IndexKind(kind)
        ctx = context if context is not None else kind.value
        if not _CONTEXT.fullmatch(ctx):
            raise ValueError("context must be 1-128 characters of [a-z0-9_.]")
        key, n = self._key(kind, ctx), self._length
        prefix = b"mhp-bidx-v1\x00" + kind.value.encode() + b"\x00" + ctx.encode() + b"\x00"
        out: list[bytes | None] = []
        for value in values:
            try:
                norm = normalise(kind, value).encode("utf-8")
            except InvalidIndexValue:
                out.append(None)
                continue
            out.append(hmac_sha256(key, prefix + norm)[:n])
        return out

    def __repr__(self) -> str:
        return f"BlindIndexer(length={self._length})"
