"""Password hashing with argon2id (argon2-cffi), and the password rules."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from mh_platform.core.errors import ValidationFailed
from mh_platform.core.i18n import N_

# argon2id at OWASP's recommended minimum (m=19 MiB, t=2, p=1): ~tens of ms here; parameters
# live in the hash, so raising them later re-hashes on next login (check_needs_rehash).
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_DUMMY = _HASHER.hash("timing-equaliser-not-a-password")

MIN_LENGTH = 10


def hash_password(password: str) -> str:
    check_password_rules(password)
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Constant-ish time: verifies against a dummy hash when the user does not exist."""
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password_rules(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise ValidationFailed(N_("password must have at least %(n)d characters"), params={"n": MIN_LENGTH})
    if len(password) > 200:
        raise ValidationFailed(N_("password is too long (200 characters at most)"))
