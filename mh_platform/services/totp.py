"""Optional TOTP second factor (RFC 6238, pyotp) for the roles in ``Settings.totp_roles``.

Login is two steps: the password check (``auth.authenticate``) hands back the user's fresh session
token; the web layer keeps it as *pending* (not signed in) until ``verify`` accepts a code. A user
without a secret enrols first: the candidate secret is derived from the app secret and the pending
session token (so it never sits in a cookie and changes with every login attempt), shown once as an
otpauth URI, and stored sealed in ``User.totp_secret_enc`` only after a correct code.
Wrong codes count as failed logins (same lockout as passwords).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
import sqlalchemy as sa

from mh_platform.core.types import Role
from mh_platform.db.models import User
from mh_platform.services import audit
from mh_platform.services.auth import (
    actor_for_user,
    authenticate,
    mint_api_token,
    rotate_session,
    second_factor_required,
    session_digest,
)
from mh_platform.services.context import Actor, ServiceContext

ISSUER = "MHP 学生心理健康预警平台"


def required_for(ctx: ServiceContext, role: Role | str | None) -> bool:
    return second_factor_required(ctx, role)


@dataclass(frozen=True)
class Pending:
    actor: Actor
    enrolled: bool


def _user_for(s, token: str) -> User | None:
    if not token:
        return None
    user = s.scalar(sa.select(User).where(User.pending_login == session_digest(token)))
    if user is None or not user.is_active:
        return None
    return user


def pending(ctx: ServiceContext, token: str) -> Pending | None:
    with ctx.uow() as uow:
        user = _user_for(uow.session, token)
        if user is None:
            return None
        actor = actor_for_user(uow.session, user)
        return Pending(actor, user.totp_secret_enc is not None) if actor else None


def candidate_secret(ctx: ServiceContext, token: str) -> str:
    mac = hmac.new(ctx.settings.secret_key.encode(), b"totp-enrol\x00" + token.encode(), hashlib.sha256).digest()
    return base64.b32encode(mac[:20]).decode().rstrip("=")


def provisioning_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=ISSUER)


def _fail(ctx: ServiceContext, s, user: User) -> None:
    user.failed_logins += 1
    data: dict = {"failures": user.failed_logins, "factor": "totp"}
    if user.failed_logins >= ctx.settings.login_max_attempts:
        user.locked_until = ctx.now() + timedelta(minutes=ctx.settings.login_lockout_minutes)
        user.failed_logins = 0
        user.pending_login = None  # the pending login dies with the lock
        data["locked"] = True
    audit.record(ctx, s, None, "auth:totp_failed", "user", user.id, data)


def _accept_step(secret: str, code: str | None, user: User, now: datetime) -> bool:
    """The code matches the current, previous or next 30 s step AND that step is newer than the last
    accepted one: a code (even an intercepted one) works once (RFC 6238 §5.2)."""
    totp = pyotp.TOTP(secret)
    code = (code or "").strip()
    for offset in (0, -1, 1):
        at = now + timedelta(seconds=totp.interval * offset)
        if hmac.compare_digest(totp.at(at), code):
            step = totp.timecode(at)
            if user.totp_last_step is not None and step <= user.totp_last_step:
                return False
            user.totp_last_step = step
            return True
    return False


def _check(ctx: ServiceContext, s, user: User, code: str | None) -> Actor | None:
    """Verify an enrolled user's code inside the caller's transaction (failures count; lockout)."""
    now = ctx.now()
    if user.totp_secret_enc is None or (user.locked_until is not None and user.locked_until > now):
        return None
    secret = ctx.keyring.open_field(s, user.totp_secret_enc, table="app_user", column="totp_secret_enc",
                                    row_id=user.id)
    if not _accept_step(secret, code, user, now):
        _fail(ctx, s, user)
        return None
    user.failed_logins = 0
    actor = actor_for_user(s, user)
    audit.record(ctx, s, actor, "auth:totp_ok", "user", user.id, {})
    return actor


@dataclass(frozen=True)
class SignedIn:
    """A web login completed by its second factor: who, and the new session's token (for the cookie)."""

    actor: Actor
    session_token: str


def _sign_in(user: User, actor: Actor | None) -> SignedIn | None:
    """The code was right: the pending login becomes the user's one session (earlier ones end)."""
    if actor is None:
        return None
    user.pending_login = None
    return SignedIn(actor, rotate_session(user))


def verify(ctx: ServiceContext, token: str, code: str) -> SignedIn | None:
    """Second step of login for an enrolled user: the session on success, else None."""
    with ctx.uow() as uow:
        user = _user_for(uow.session, token)
        done = _sign_in(user, _check(ctx, uow.session, user, code)) if user is not None else None
        uow.commit()
        return done


@dataclass(frozen=True)
class TokenResult:
    token: str | None = None
    expires_at: datetime | None = None
    reason: str = ""  # bad_credentials / totp_required / totp_not_enrolled


def issue_api_token(ctx: ServiceContext, username: str, password: str, code: str | None) -> TokenResult:
    """Password (and, for the roles in ``totp_roles``, a TOTP code) → a bearer token.
    A second-factor role cannot get a token with the password alone."""
    res = authenticate(ctx, username, password, new_session=False)
    if not res.ok or res.actor is None:
        return TokenResult(reason="bad_credentials")
    if required_for(ctx, res.actor.role):
        with ctx.uow() as uow:
            user = uow.session.get(User, res.actor.user_id)
            if user is None or user.totp_secret_enc is None:
                return TokenResult(reason="totp_not_enrolled")
            if not (code or "").strip():
                return TokenResult(reason="totp_required")
            actor = _check(ctx, uow.session, user, code)
            uow.commit()
        if actor is None:
            return TokenResult(reason="bad_credentials")
    token, expires = mint_api_token(ctx, res.actor)
    return TokenResult(token, expires)


def enrol(ctx: ServiceContext, token: str, code: str) -> SignedIn | None:
    """Confirm the candidate secret with a code and store it sealed; the session on success."""
    now = ctx.now()
    with ctx.uow() as uow:
        s = uow.session
        user = _user_for(s, token)
        if user is None or user.totp_secret_enc is not None:
            return None
        if user.locked_until is not None and user.locked_until > now:
            return None
        secret = candidate_secret(ctx, token)
        if not _accept_step(secret, code, user, now):
            _fail(ctx, s, user)
            uow.commit()
            return None
        user.totp_secret_enc = ctx.keyring.seal(s, table="app_user", column="totp_secret_enc", row_id=user.id,
                                                value=secret, student_id=None, now=now)
        user.failed_logins = 0
        actor = actor_for_user(s, user)
        audit.record(ctx, s, actor, "auth:totp_enrolled", "user", user.id, {})
        done = _sign_in(user, actor)
        uow.commit()
        return done


def verify_code(ctx: ServiceContext, user_id: uuid.UUID | None, code: str | None) -> Actor | None:
    """Check an enrolled user's code outside a web login (a person confirming who they are at the
    command line, after ``auth.authenticate``). Failures count like login failures (lockout)."""
    with ctx.uow() as uow:
        user = uow.session.get(User, user_id) if user_id is not None else None
        if user is None or not user.is_active:
            return None
        actor = _check(ctx, uow.session, user, code)
        uow.commit()
        return actor
