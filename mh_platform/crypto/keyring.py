"""Master keys, data keys, wrapping and the in-process keyring.

Key hierarchy (see docs/crypto.md)::

    master key (KEK)            env MHP_MASTER_KEY or a 0600 key file; never in the database
      └─ wraps ─ data keys      one per student (shreddable), system keys, the blind-index root key,
                                 the audit-MAC key; stored *wrapped* in the database

Invariants:

* A master key is 32 random bytes with a short printable id. It is never used directly as a
  cipher key: the wrapping key and the key check value are derived from it with HKDF under
  distinct labels ("never one key for two purposes").
* A wrapped data key is bound (AES-GCM associated data) to its key id, purpose, owner id and the
  id of the master that wrapped it, so a wrapped key copied to another student or another purpose
  fails to unwrap.
* Unwrapping picks the master by the id recorded in the wrapped key; nothing ever tries several
  keys until one works.
* Loading refuses (typed ``KeyringError``) a missing, unreadable, group/world-readable or
  malformed key file, and a key that does not match its key check value.
* No key material appears in ``repr``, in exception messages or in the key file's metadata.

This module is pure apart from the key-file loader/writers and the environment reader, which
are the only functions here that touch the file system. It never reads the clock.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from hmac import compare_digest
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
"""Every symmetric key in the hierarchy is 256 bits."""

MASTER_KEY_ENV = "MHP_MASTER_KEY"
"""``<key-id>:<base64 of 32 bytes>``, e.g. injected by the process manager."""

MASTER_KEY_FILE_ENV = "MHP_MASTER_KEY_FILE"
"""Path of a JSON key file (mode 0600 or stricter)."""

KEY_FILE_FORMAT = "mhp-master-keys"
KEY_FILE_VERSION = 1
KCV_BYTES = 16
_MAX_KEY_FILE_BYTES = 1 << 20
_KEY_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

WRAP_FORMAT_V1 = 1
_WRAP_NONCE = 12
_WRAPPED_LEN = 1 + _WRAP_NONCE + KEY_BYTES + 16  # version | nonce | key | tag


# --------------------------------------------------------------------------- errors


class KeyringError(Exception):
    """Base of every key-management failure. Messages never contain key material."""

    code = "keyring_error"


class MasterKeyMissing(KeyringError):
    """No master key configured, or the key file does not exist / cannot be read."""

    code = "master_key_missing"


class MasterKeyInsecure(KeyringError):
    """The key file is group/world accessible or not a regular file."""

    code = "master_key_insecure"


class MasterKeyMalformed(KeyringError):
    """The key file or environment value does not parse."""

    code = "master_key_malformed"


class WrongMasterKey(KeyringError):
    """The key does not match its key check value (file) or the value the database recorded."""

    code = "wrong_master_key"


class UnknownMasterKey(KeyringError):
    """A wrapped key names a master key id that is not loaded."""

    code = "unknown_master_key"


class UnwrapFailed(KeyringError):
    """A wrapped data key did not authenticate: tampered, or bound to another owner/purpose/master."""

    code = "unwrap_failed"


# --------------------------------------------------------------------------- helpers


def derive_key(secret: bytes, label: str, length: int = KEY_BYTES) -> bytes:
    """HKDF-SHA256 sub-key of ``secret`` for one purpose. Distinct labels give independent keys."""
    if len(secret) < KEY_BYTES:
        raise ValueError("secret must be at least 32 bytes")
    return HKDF(
        algorithm=hashes.SHA256(), length=length, salt=None, info=b"mhp/v1/" + label.encode("utf-8")
    ).derive(secret)


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """HMAC-SHA256 via ``cryptography``."""
    h = crypto_hmac.HMAC(key, hashes.SHA256())
    h.update(message)
    return h.finalize()


def _lp(data: bytes) -> bytes:
    """4-byte big-endian length prefix: makes concatenations unambiguous."""
    return len(data).to_bytes(4, "big") + data


_CHECKED_KEY_IDS: set[str] = set()  # ids already found well-formed (there are a handful per process)


def _check_key_id(key_id: str) -> str:
    if isinstance(key_id, str) and key_id in _CHECKED_KEY_IDS:
        return key_id
    if not isinstance(key_id, str) or not _KEY_ID_RE.fullmatch(key_id):
        raise MasterKeyMalformed("master key id must be 1-64 characters of [A-Za-z0-9._-]")
    if len(_CHECKED_KEY_IDS) < 1024:
        _CHECKED_KEY_IDS.add(key_id)
    return key_id


def new_master_key_id() -> str:
    """A fresh random master key id, e.g. ``mk-3f9c0a1b2c3d4e5f``."""
    return "mk-" + secrets.token_hex(8)


# --------------------------------------------------------------------------- master keys


@dataclass(frozen=True, eq=False)
class MasterKey:
    """One version of the key-encryption key. ``material`` never appears in ``repr``."""

    key_id: str
    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_key_id(self.key_id)
        if not isinstance(self.material, bytes) or len(self.material) != KEY_BYTES:
            raise MasterKeyMalformed(f"master key {self.key_id} must be exactly 32 bytes")

    @classmethod
    def generate(cls, key_id: str | None = None) -> MasterKey:
        """A new random master key (``os.urandom`` via ``secrets``)."""
        return cls(key_id or new_master_key_id(), secrets.token_bytes(KEY_BYTES))

    def check_value(self) -> bytes:
        """Key check value: a 16-byte PRF output that identifies the key without revealing it.

        The database records it the first time a master is used; loading with a different key
        under the same id is then refused (``MasterKeySet.verify_check_values``).
        """
        return hmac_sha256(derive_key(self.material, "master-kcv"), b"mhp master key check value")[:KCV_BYTES]

    def _wrapping_key(self) -> bytes:
        return derive_key(self.material, "dek-wrap")

    def _wrapping_aead(self) -> AESGCM:
        """The AES-256-GCM cipher of the wrapping key, derived once (HKDF and the key schedule
        cost more than unwrapping one data key)."""
        cipher = self.__dict__.get("_wrap_aead")
        if cipher is None:
            cipher = AESGCM(self._wrapping_key())
            object.__setattr__(self, "_wrap_aead", cipher)
        return cipher


@dataclass(frozen=True)
class MasterKeySet:
    """The loaded master key versions; ``primary_id`` wraps new and re-wrapped data keys.

    Invariant: ``primary_id`` is one of ``keys``; every key's id equals its mapping key.
    """

    primary_id: str
    keys: Mapping[str, MasterKey]

    def __post_init__(self) -> None:
        if self.primary_id not in self.keys:
            raise MasterKeyMalformed("primary master key id is not among the keys")
        for kid, key in self.keys.items():
            if kid != key.key_id:
                raise MasterKeyMalformed("master key id mismatch")

    @classmethod
    def single(cls, key: MasterKey) -> MasterKeySet:
        return cls(key.key_id, {key.key_id: key})

    @property
    def primary(self) -> MasterKey:
        return self.keys[self.primary_id]

    def get(self, key_id: str) -> MasterKey:
        """The master with this id; ``UnknownMasterKey`` if it is not loaded (no fallback)."""
        try:
            return self.keys[key_id]
        except KeyError:
            raise UnknownMasterKey(f"master key {key_id!r} is not loaded") from None

    def check_values(self) -> dict[str, bytes]:
        """``{key id: key check value}`` — what the database stores to detect a wrong key."""
        return {kid: k.check_value() for kid, k in self.keys.items()}

    def verify_check_values(self, expected: Mapping[str, bytes]) -> set[str]:
        """Refuse (``WrongMasterKey``) any loaded key whose KCV differs from the recorded one.

        Returns the ids of loaded keys that have no recorded KCV yet (new masters): the caller
        records them. Ids recorded but not loaded are not an error here; unwrapping a key that
        needs one raises ``UnknownMasterKey``.
        """
        unknown: set[str] = set()
        for kid, key in self.keys.items():
            want = expected.get(kid)
            if want is None:
                unknown.add(kid)
            elif not compare_digest(key.check_value(), bytes(want)):
                raise WrongMasterKey(f"master key {kid!r} does not match the recorded key check value")
        return unknown


def _b64decode_key(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise MasterKeyMalformed(f"{what}: key must be a base64 string")
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise MasterKeyMalformed(f"{what}: key is not valid base64") from None
    if len(raw) != KEY_BYTES:
        raise MasterKeyMalformed(f"{what}: key must decode to 32 bytes")
    return raw


def parse_master_key_env(value: str) -> MasterKeySet:
    """Parse ``MHP_MASTER_KEY`` = ``<key-id>:<base64 of 32 bytes>`` into a one-key set."""
    if not isinstance(value, str) or ":" not in value:
        raise MasterKeyMalformed(f"{MASTER_KEY_ENV} must be '<key-id>:<base64 of 32 bytes>'")
    key_id, _, b64 = value.strip().partition(":")
    key = MasterKey(_check_key_id(key_id), _b64decode_key(b64, MASTER_KEY_ENV))
    return MasterKeySet.single(key)


def parse_master_key_document(doc: Any, *, source: str = "key file") -> MasterKeySet:
    """Validate a key-file JSON document (already decoded) and return its keys.

    Format::

        {"format": "mhp-master-keys", "version": 1, "primary": "<id>",
         "keys": {"<id>": {"key": "<base64 32 bytes>", "kcv": "<hex 16 bytes>"}, ...}}

    A key whose bytes do not reproduce its ``kcv`` raises ``WrongMasterKey``.
    """
    if not isinstance(doc, dict) or doc.get("format") != KEY_FILE_FORMAT:
        raise MasterKeyMalformed(f"{source}: not an {KEY_FILE_FORMAT} document")
    if doc.get("version") != KEY_FILE_VERSION:
        raise MasterKeyMalformed(f"{source}: unsupported key file version {doc.get('version')!r}")
    entries = doc.get("keys")
    primary = doc.get("primary")
    if not isinstance(entries, dict) or not entries or not isinstance(primary, str):
        raise MasterKeyMalformed(f"{source}: needs a non-empty 'keys' object and a 'primary' id")
    keys: dict[str, MasterKey] = {}
    for kid, entry in entries.items():
        _check_key_id(kid)
        if not isinstance(entry, dict):
            raise MasterKeyMalformed(f"{source}: entry {kid!r} must be an object")
        key = MasterKey(kid, _b64decode_key(entry.get("key"), f"{source} entry {kid!r}"))
        kcv = entry.get("kcv")
        if not isinstance(kcv, str):
            raise MasterKeyMalformed(f"{source}: entry {kid!r} has no 'kcv'")
        try:
            kcv_raw = bytes.fromhex(kcv)
        except ValueError:
            raise MasterKeyMalformed(f"{source}: entry {kid!r} 'kcv' is not hex") from None
        if not compare_digest(key.check_value(), kcv_raw):
            raise WrongMasterKey(f"{source}: key {kid!r} does not match its key check value")
        keys[kid] = key
    if primary not in keys:
        raise MasterKeyMalformed(f"{source}: primary {primary!r} is not among the keys")
    return MasterKeySet(primary, keys)


def _document(keyset: MasterKeySet) -> dict[str, Any]:
    return {
        "format": KEY_FILE_FORMAT,
        "version": KEY_FILE_VERSION,
        "primary": keyset.primary_id,
        "keys": {
            kid: {"key": base64.b64encode(k.material).decode("ascii"), "kcv": k.check_value().hex()}
            for kid, k in keyset.keys.items()
        },
    }


def load_master_key_file(path: str | os.PathLike[str]) -> MasterKeySet:
    """Read and validate a key file. Refuses missing/unreadable, non-regular, mode & 0o077, malformed.

    The mode is checked on the opened descriptor (``fstat``), so a file swapped between the check
    and the read cannot slip through. Symlinks to a strict regular file are accepted (secret
    mounts use them).
    """
    p = os.fspath(path)
    try:
        # O_NONBLOCK: a FIFO planted at the path must not hang start-up; harmless for files.
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise MasterKeyMissing(f"master key file {p} does not exist") from None
    except OSError as exc:
        raise MasterKeyMissing(f"master key file {p} cannot be opened ({exc.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MasterKeyInsecure(f"master key file {p} is not a regular file")
        if st.st_mode & 0o077:
            raise MasterKeyInsecure(
                f"master key file {p} is accessible by group/others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); run: chmod 600"
            )
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(_MAX_KEY_FILE_BYTES + 1)
    if len(raw) > _MAX_KEY_FILE_BYTES:
        raise MasterKeyMalformed(f"master key file {p} is too large")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise MasterKeyMalformed(f"master key file {p} is not valid JSON") from None
    return parse_master_key_document(doc, source=f"master key file {p}")


def load_master_key_set(
    environ: Mapping[str, str],
    *,
    path: str | os.PathLike[str] | None = None,
    expected_check_values: Mapping[str, bytes] | None = None,
) -> MasterKeySet:
    """The app's start-up loader: env ``MHP_MASTER_KEY`` or a key file, never both.

    ``path`` defaults to ``environ["MHP_MASTER_KEY_FILE"]``. With ``expected_check_values``
    (the KCVs the database recorded) a wrong key raises ``WrongMasterKey``. Any failure is a
    ``KeyringError``: the app must refuse to start.
    """
    env_value = environ.get(MASTER_KEY_ENV)
    file_path = path if path is not None else environ.get(MASTER_KEY_FILE_ENV)
    if env_value and file_path:
        raise MasterKeyMalformed(
            f"set either {MASTER_KEY_ENV} or a key file ({MASTER_KEY_FILE_ENV}), not both"
        )
    if env_value:
        keyset = parse_master_key_env(env_value)
    elif file_path:
        keyset = load_master_key_file(file_path)
    else:
        raise MasterKeyMissing(f"no master key: set {MASTER_KEY_ENV} or {MASTER_KEY_FILE_ENV}")
    if expected_check_values is not None:
        keyset.verify_check_values(expected_check_values)
    return keyset


def _write_new_0600(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        Path(path).unlink(missing_ok=True)
        raise


def _encode_document(keyset: MasterKeySet) -> bytes:
    return (json.dumps(_document(keyset), indent=2, sort_keys=True) + "\n").encode("utf-8")


def generate_master_key_file(path: str | os.PathLike[str], *, key_id: str | None = None) -> str:
    """Create a new key file (mode 0600, refuses to overwrite) with one fresh key; return its id."""
    p = os.fspath(path)
    key = MasterKey.generate(key_id)
    try:
        _write_new_0600(p, _encode_document(MasterKeySet.single(key)))
    except FileExistsError:
        raise KeyringError(f"{p} already exists; refusing to overwrite a master key file") from None
    return key.key_id


def _replace_key_file(p: str, keyset: MasterKeySet) -> None:
    tmp = f"{p}.tmp-{secrets.token_hex(4)}"
    _write_new_0600(tmp, _encode_document(keyset))
    os.replace(tmp, p)
    dir_fd = os.open(os.path.dirname(os.path.abspath(p)), os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename durable before old key versions are relied on
    finally:
        os.close(dir_fd)


def add_master_key_version(path: str | os.PathLike[str], *, key_id: str | None = None) -> str:
    """Rotation step 1: add a fresh master to an existing key file and make it primary.

    Old versions stay in the file (decrypt-capable) until every wrapped key has been re-wrapped
    (``Keyring.rewrap``) and backups needing them have expired; then ``remove_master_key_version``.
    The file is replaced atomically, keeping mode 0600.
    """
    p = os.fspath(path)
    current = load_master_key_file(p)
    new = MasterKey.generate(key_id)
    if new.key_id in current.keys:
        raise KeyringError(f"master key id {new.key_id!r} already exists")
    _replace_key_file(p, MasterKeySet(new.key_id, {**current.keys, new.key_id: new}))
    return new.key_id


def remove_master_key_version(path: str | os.PathLike[str], key_id: str) -> None:
    """Rotation last step: drop a retired (non-primary) master version from the key file."""
    p = os.fspath(path)
    current = load_master_key_file(p)
    if key_id == current.primary_id:
        raise KeyringError("refusing to remove the primary master key")
    current.get(key_id)
    _replace_key_file(
        p, MasterKeySet(current.primary_id, {k: v for k, v in current.keys.items() if k != key_id})
    )


# --------------------------------------------------------------------------- data keys


class KeyPurpose(StrEnum):
    """What a data key may be used for. One key, one purpose."""

    STUDENT = "student"  # field encryption of one student's data; owner_id = student UUID
    SYSTEM = "system"  # field encryption of data with no student; owner_id optional context id
    BLIND_INDEX = "blind_index"  # root of the HMAC blind-index keys
    AUDIT_MAC = "audit_mac"  # HMAC key of the hash-chained audit log

    @property
    def encrypts_fields(self) -> bool:
        return self in (KeyPurpose.STUDENT, KeyPurpose.SYSTEM)


def _purpose(value: KeyPurpose | str) -> KeyPurpose:
    """``KeyPurpose(value)`` without the enum call when it already is one (bulk unwrapping)."""
    return value if type(value) is KeyPurpose else KeyPurpose(value)


@dataclass(frozen=True, eq=False)
class DataKey:
    """An unwrapped 256-bit data key. ``material`` never appears in ``repr``.

    Invariant: a STUDENT key has an ``owner_id`` (the student's UUID); ``key_id`` is a fresh UUID
    (not the student id) so a student can have several key versions.
    """

    key_id: UUID
    material: bytes = field(repr=False)
    purpose: KeyPurpose
    owner_id: UUID | None = None

    def aead(self) -> AESGCM:
        """The AES-256-GCM cipher for this key, built once (its key schedule costs more than a
        short decryption)."""
        cipher = self.__dict__.get("_aead")
        if cipher is None:
            cipher = AESGCM(self.material)
            object.__setattr__(self, "_aead", cipher)
        return cipher

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, UUID):
            raise TypeError("key_id must be a UUID")
        if not isinstance(self.material, bytes) or len(self.material) != KEY_BYTES:
            raise ValueError("data key material must be exactly 32 bytes")
        object.__setattr__(self, "purpose", _purpose(self.purpose))
        if self.owner_id is not None and not isinstance(self.owner_id, UUID):
            raise TypeError("owner_id must be a UUID or None")
        if self.purpose is KeyPurpose.STUDENT and self.owner_id is None:
            raise ValueError("a student data key needs the student's UUID as owner_id")


@dataclass(frozen=True)
class WrappedDataKey:
    """A data key encrypted under one master: what the database stores (``blob`` as BLOB/bytea).

    ``blob`` = wrap format version (1 byte) | 96-bit nonce | AES-256-GCM(key) | tag; the
    associated data binds key id, purpose, owner id and master key id.
    """

    key_id: UUID
    purpose: KeyPurpose
    owner_id: UUID | None
    master_key_id: str
    blob: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key_id, UUID) or not (
            self.owner_id is None or isinstance(self.owner_id, UUID)
        ):
            raise TypeError("key_id and owner_id must be uuid.UUID (owner_id may be None)")
        object.__setattr__(self, "purpose", _purpose(self.purpose))
        if not isinstance(self.blob, bytes | bytearray | memoryview):
            raise TypeError("blob must be bytes")
        object.__setattr__(self, "blob", bytes(self.blob))  # drivers hand back memoryview
        _check_key_id(self.master_key_id)


def generate_data_key(purpose: KeyPurpose, owner_id: UUID | None = None) -> DataKey:
    """A fresh random data key with a fresh UUID id."""
    return DataKey(uuid4(), secrets.token_bytes(KEY_BYTES), KeyPurpose(purpose), owner_id)


def _wrap_aad(key_id: UUID, purpose: KeyPurpose, owner_id: UUID | None, master_key_id: str) -> bytes:
    return (
        b"mhp-dek-wrap-v1"
        + key_id.bytes
        + _lp(_purpose(purpose).value.encode("ascii"))
        + _lp(owner_id.bytes if owner_id is not None else b"")
        + _lp(master_key_id.encode("ascii"))
    )


def wrap_data_key(key: DataKey, master: MasterKey) -> WrappedDataKey:
    """Encrypt ``key`` under ``master`` (AES-256-GCM, random nonce, bound AAD)."""
    nonce = os.urandom(_WRAP_NONCE)
    aad = _wrap_aad(key.key_id, key.purpose, key.owner_id, master.key_id)
    ct = master._wrapping_aead().encrypt(nonce, key.material, aad)
    return WrappedDataKey(
        key.key_id, key.purpose, key.owner_id, master.key_id, bytes([WRAP_FORMAT_V1]) + nonce + ct
    )


def unwrap_data_key(wrapped: WrappedDataKey, master: MasterKey) -> DataKey:
    """Decrypt a wrapped key with the master it names. ``UnwrapFailed`` if it does not authenticate."""
    if wrapped.master_key_id != master.key_id:
        raise UnknownMasterKey(
            f"data key {wrapped.key_id} is wrapped by {wrapped.master_key_id!r}, not {master.key_id!r}"
        )
    blob = bytes(wrapped.blob)
    if len(blob) != _WRAPPED_LEN or blob[0] != WRAP_FORMAT_V1:
        raise UnwrapFailed(f"wrapped data key {wrapped.key_id} is malformed")
    aad = _wrap_aad(wrapped.key_id, wrapped.purpose, wrapped.owner_id, wrapped.master_key_id)
    try:
        material = master._wrapping_aead().decrypt(
            blob[1 : 1 + _WRAP_NONCE], blob[1 + _WRAP_NONCE :], aad
        )
    except InvalidTag:
        raise UnwrapFailed(f"wrapped data key {wrapped.key_id} did not authenticate") from None
    return DataKey(wrapped.key_id, material, _purpose(wrapped.purpose), wrapped.owner_id)


def rewrap(wrapped: WrappedDataKey, old_master: MasterKey, new_master: MasterKey) -> WrappedDataKey:
    """Master rotation for one data key: unwrap under ``old_master``, wrap under ``new_master``.

    The data key (and its id) is unchanged, so no field needs re-encryption. Fresh nonce.
    """
    return wrap_data_key(unwrap_data_key(wrapped, old_master), new_master)


WrappedKeyLoader = Callable[[UUID], WrappedDataKey | None]
"""Fetches a wrapped key by id from storage; returns None if unknown. It may raise
``mh_platform.crypto.envelope.KeyShredded`` for a destroyed key; the keyring lets it through."""


class Keyring:
    """The process's view of the key hierarchy: loaded masters plus a bounded cache of data keys.

    A ``Keyring`` is callable as an envelope key lookup: ``keyring(key_id) -> DataKey | None``.

    Freshness contract: cached keys stay usable until evicted. After a key is shredded, the
    process that shredded it calls ``forget``; every other process must call ``forget`` /
    ``forget_many`` for destroyed ids (e.g. at the start of each request or job batch, from the
    erasure ledger high-water mark) or ``clear``. Thread-safe.
    """

    def __init__(
        self, masters: MasterKeySet, loader: WrappedKeyLoader | None = None, *, max_cached: int = 4096
    ) -> None:
        if max_cached < 1:
            raise ValueError("max_cached must be positive")
        self._masters = masters
        self._loader = loader
        self._max = max_cached
        self._cache: OrderedDict[UUID, DataKey] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def masters(self) -> MasterKeySet:
        return self._masters

    def _remember(self, key: DataKey) -> None:
        with self._lock:
            self._cache[key.key_id] = key
            self._cache.move_to_end(key.key_id)
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)

    def create_data_key(
        self, purpose: KeyPurpose, owner_id: UUID | None = None
    ) -> tuple[DataKey, WrappedDataKey]:
        """A new data key and its wrapping under the primary master (store the wrapped one)."""
        key = generate_data_key(purpose, owner_id)
        wrapped = wrap_data_key(key, self._masters.primary)
        self._remember(key)
        return key, wrapped

    def unwrap(self, wrapped: WrappedDataKey) -> DataKey:
        """Unwrap with the master the wrapped key names, and cache the result."""
        with self._lock:
            cached = self._cache.get(wrapped.key_id)
            if cached is not None:
                self._cache.move_to_end(wrapped.key_id)
                return cached
        key = unwrap_data_key(wrapped, self._masters.get(wrapped.master_key_id))
        self._remember(key)
        return key

    def unwrap_many(self, wrapped: Iterable[WrappedDataKey]) -> list[DataKey]:
        """Unwrap a batch (bulk imports): cached keys are reused, the others are unwrapped but not
        cached, so one large batch does not evict the keys the rest of the process is using."""
        batch = list(wrapped)
        with self._lock:
            hits = {w.key_id: k for w in batch if (k := self._cache.get(w.key_id)) is not None}
        get_master = self._masters.get
        return [hits.get(w.key_id) or unwrap_data_key(w, get_master(w.master_key_id)) for w in batch]

    def lookup(self, key_id: UUID) -> DataKey | None:
        """Cached key, else loader → unwrap. None when no loader or the loader does not know the id."""
        with self._lock:
            cached = self._cache.get(key_id)
            if cached is not None:
                self._cache.move_to_end(key_id)
                return cached
        if self._loader is None:
            return None
        wrapped = self._loader(key_id)
        if wrapped is None:
            return None
        if wrapped.key_id != key_id:
            raise UnwrapFailed(f"loader returned key {wrapped.key_id} for {key_id}")
        return self.unwrap(wrapped)

    __call__ = lookup

    def needs_rewrap(self, wrapped: WrappedDataKey) -> bool:
        """True when the key is not wrapped by the current primary master."""
        return wrapped.master_key_id != self._masters.primary_id

    def rewrap(self, wrapped: WrappedDataKey) -> WrappedDataKey:
        """Re-wrap onto the primary master; idempotent (returns ``wrapped`` if already there)."""
        if not self.needs_rewrap(wrapped):
            return wrapped
        return rewrap(wrapped, self._masters.get(wrapped.master_key_id), self._masters.primary)

    def forget(self, key_id: UUID) -> None:
        """Evict one key (after shredding)."""
        with self._lock:
            self._cache.pop(key_id, None)

    def forget_many(self, key_ids: Iterable[UUID]) -> None:
        with self._lock:
            for kid in key_ids:
                self._cache.pop(kid, None)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def __len__(self) -> int:
        return len(self._cache)

    def __repr__(self) -> str:
        return f"Keyring(primary={self._masters.primary_id!r}, masters={sorted(self._masters.keys)}, cached={len(self)})"
