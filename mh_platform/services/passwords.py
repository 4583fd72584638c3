"""Password hashing with argon2id (argon2-cffi), and the password rules.

Rules (ASVS 5.0 6.2.1, 6.2.4, 6.2.12; security test plan T12): 10–200 characters; not one of the
30,000 most common passwords, and not guessable from them or from the user's own name — both judged
by zxcvbn (Dropbox's estimator, with its packaged frequency lists: no network); no composition rules
(ASVS 6.2.5)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

from mh_platform.core.errors import ValidationFailed
from mh_platform.core.i18n import N_

# argon2id at OWASP's recommended minimum (m=19 MiB, t=2, p=1): ~tens of ms here; parameters
# live in the hash, so raising them later re-hashes on next login (check_needs_rehash).
_HASHER = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)
_DUMMY = _HASHER.hash("timing-equaliser-not-a-password")

MIN_LENGTH = 10
MIN_STRENGTH = 3  # zxcvbn score 0-4; 3: "safely unguessable", about 10^8 guesses or more


def hash_password(password: str, *, user_inputs: tuple[str, ...] = ()) -> str:
    check_password_rules(password, user_inputs=user_inputs)
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Constant-ish time: verifies against a dummy hash when the user does not exist."""
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def check_password_rules(password: str, *, user_inputs: tuple[str, ...] = ()) -> None:
    """Refuse a password that is too short, too long, common or built from ``user_inputs`` (the
    username, display name); the message names the rule, never the password."""
    if len(password) < MIN_LENGTH:
        raise ValidationFailed(N_("password must have at least %(n)d characters"), params={"n": MIN_LENGTH})
    if len(password) > 200:
        raise ValidationFailed(N_("password is too long (200 characters at most)"))
    inputs = [x for u in user_inputs if u for x in (u, *u.replace("_", ".").replace("-", ".").split(".")) if len(x) >= 3]
    if any(x.lower() in password.lower() for x in inputs):
        raise ValidationFailed(N_("the password must not contain your user name"))
    if zxcvbn(password[:72], user_inputs=inputs)["score"] < MIN_STRENGTH:  # judged on its first 72 characters
        raise ValidationFailed(N_("this password is too common or too easy to guess; a few unrelated words work well"))
