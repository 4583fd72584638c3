"""One-time student access codes.

* 10 characters from Crockford's base32 alphabet (no I, L, O, U) drawn with ``secrets``: 50 bits,
  shown in two groups of five (``7KQ2M-XW9DH``). Input is forgiving: case, spaces and dashes are
  ignored and I/L read as 1, O as 0 (Crockford's decoding rules).
* Stored as HMAC-SHA256 under a key derived (HKDF, label ``access-code``) from the system data key,
  which is itself wrapped by the master key that never sits in the database. A plain SHA-256 of a
  50-bit secret could be brute-forced offline from a stolen database (2^50 hashes is days on GPUs);
  the keyed hash cannot be tested without the master key (ASVS 6.5.2-6.5.4: lookup secrets under
  112 bits are hashed with a secret).
* A code belongs to one student and one campaign, works only while the campaign is open, is
  revoked when consent is refused or withdrawn, and stops working once the student completed the
  battery (resumable until then). Rate limiting and lock-out are in the web layer.
"""

from __future__ import annotations

import secrets

from sqlalchemy.orm import Session

from mh_platform.crypto.keyring import KeyPurpose, derive_key, hmac_sha256
from mh_platform.services.context import ServiceContext

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I L O U
LENGTH = 10
BITS = LENGTH * 5
_DECODE = {c: c for c in ALPHABET} | {"I": "1", "L": "1", "O": "0"}


def generate() -> str:
    """A fresh code (10 characters, 50 bits from the OS CSPRNG)."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def display(code: str) -> str:
    """``ABCDEFGHJK`` → ``ABCDE-FGHJK`` (how slips print it)."""
    return f"{code[:5]}-{code[5:]}"


def normalise(raw: str) -> str | None:
    """The canonical code from what a student typed, or None if it cannot be a code."""
    if not isinstance(raw, str) or len(raw) > 40:
        return None
    out = []
    for ch in raw.upper():
        if ch in " -\t_":
            continue
        mapped = _DECODE.get(ch)
        if mapped is None:
            return None
        out.append(mapped)
    return "".join(out) if len(out) == LENGTH else None


def _key(ctx: ServiceContext, s: Session) -> bytes:
    k = ctx.extras.get("access_code_key")
    if k is None:
        material = ctx.keyring.system_key(s, KeyPurpose.SYSTEM, now=ctx.now()).material
        k = derive_key(material, "access-code")
        ctx.extras["access_code_key"] = k
    return k


def hash_code(ctx: ServiceContext, s: Session, code: str) -> bytes:
    """HMAC-SHA256 of the canonical code (32 bytes) — what the database stores."""
    return hmac_sha256(_key(ctx, s), code.encode("ascii"))
