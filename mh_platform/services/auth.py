"""Accounts and authentication: users, roles, login with lockout, session tokens, API tokens.

Sessions carry a per-user ``session_token`` (never the raw user id); rotating it on logout,
password change, disable and role change makes every earlier cookie useless at once. The database
keeps only the token's SHA-256 (``User.session_token``), as it does for API tokens: a copy of the
database does not hand out live sessions.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core.errors import NotFound, ValidationFailed
from mh_platform.core.i18n import N_
from mh_platform.core.types import Role
from mh_platform.db.models import ApiToken, Institution, OrgUnit, RoleAssignment, User
from mh_platform.services import audit
from mh_platform.services.context import Actor, ServiceContext
from mh_platform.services.passwords import hash_password, verify_password

USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")


def _token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_session_token() -> str:
    return secrets.token_urlsafe(32)


def session_digest(token: str) -> str:
    """What ``User.session_token`` stores for a session token (64 hex characters)."""
    return hashlib.sha256(token.encode()).hexdigest()


def second_factor_required(ctx: ServiceContext, role: Role | str | None) -> bool:
    """The role signs in with a TOTP code after the password (``settings.totp_roles``)."""
    return role is not None and Role(role).value in {str(r) for r in ctx.settings.totp_roles}


def rotate_session(user: User) -> str:
    """A fresh session for ``user``: its digest stored, the token itself returned (for the cookie)."""
    token = new_session_token()
    user.session_token = session_digest(token)
    return token


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    actor: Actor | None = None
    session_token: str | None = None  # a web login's new session (None while a second factor is due)
    reason: str = ""  # bad_credentials / locked / disabled
    pending_token: str | None = None  # a second-factor role's web login: the code step's token


def actor_for_user(session: Session, user: User) -> Actor | None:
    """The actor a user acts as: their (first) role assignment with its unit path."""
    ra = session.scalars(sa.select(RoleAssignment).where(RoleAssignment.user_id == user.id)
                         .order_by(RoleAssignment.created_at)).first()
    if ra is None:
        return None
    path = None
    if ra.unit_id is not None:
        unit = session.get(OrgUnit, ra.unit_id)
        path = unit.path if unit else None
    return Actor(user_id=user.id, role=Role(ra.role), unit_id=ra.unit_id, unit_path=path,
                 institution_id=ra.institution_id, username=user.username, student_id=user.student_id)


def create_user(ctx: ServiceContext, actor: Actor, *, username: str, password: str, role: Role | str,
                unit_id: uuid.UUID | None = None, institution_id: uuid.UUID | None = None,
                display_name: str = "", email: str | None = None, student_id: uuid.UUID | None = None) -> uuid.UUID:
    """Create an account with one role assignment. Validates everything before writing."""
    username = username.strip().lower()
    if not (3 <= len(username) <= 64) or set(username) - USERNAME_CHARS:
        raise ValidationFailed(N_("username: 3–64 characters, lowercase letters, digits, . _ -"))
    try:
        role = Role(role)
    except ValueError:
        raise ValidationFailed(f"unknown role {role!r}; one of: {', '.join(r.value for r in Role)}") from None
    if role == Role.CLINICIAN and institution_id is None:
        raise ValidationFailed(N_("a clinician needs an institution"))
    if role not in (Role.CLINICIAN, Role.SYSADMIN) and unit_id is None:
        raise ValidationFailed(f"role {role} needs an org unit")
    pw_hash = hash_password(password, user_inputs=(username, display_name))
    now = ctx.now()
    with ctx.uow() as uow:
        s = uow.session
        if s.scalar(sa.select(User.id).where(User.username == username)) is not None:
            raise ValidationFailed(f"username {username!r} is taken")
        if unit_id is not None and s.get(OrgUnit, unit_id) is None:
            raise ValidationFailed(N_("unknown org unit"))
        if institution_id is not None and s.get(Institution, institution_id) is None:
            raise ValidationFailed(N_("unknown institution"))
        user = User(username=username, display_name=display_name or username, email=email, password_hash=pw_hash,
                    session_token=session_digest(new_session_token()), student_id=student_id, password_changed_at=now,
                    created_at=now)
        s.add(user)
        s.flush()
        s.add(RoleAssignment(user_id=user.id, role=role.value, unit_id=unit_id if role != Role.CLINICIAN else None,
                             institution_id=institution_id if role == Role.CLINICIAN else None, created_at=now))
        audit.record(ctx, s, actor, "user:created", "user", user.id, {"role": role.value})
        uow.commit()
        return user.id


def authenticate(ctx: ServiceContext, username: str, password: str, *, new_session: bool = True) -> LoginResult:
    """Check a password; count failures; lock the account after too many; never say which part was wrong.

    ``new_session=False`` (API token requests) leaves the user's web session token alone."""
    now = ctx.now()
    st = ctx.settings
    with ctx.uow() as uow:
        s = uow.session
        user = s.scalar(sa.select(User).where(User.username == (username or "").strip().lower()))
        ok = verify_password(user.password_hash if user else None, password or "")
        if user is None:
            return LoginResult(False, reason="bad_credentials")
        if user.locked_until is not None and user.locked_until > now:
            audit.record(ctx, s, None, "auth:login_locked", "user", user.id, {})
            uow.commit()
            return LoginResult(False, reason="locked")
        if not ok:
            user.failed_logins += 1
            data = {"failures": user.failed_logins}
            if user.failed_logins >= st.login_max_attempts:
                user.locked_until = now + timedelta(minutes=st.login_lockout_minutes)
                user.failed_logins = 0
                data["locked"] = True
            audit.record(ctx, s, None, "auth:login_failed", "user", user.id, data)
            uow.commit()
            return LoginResult(False, reason="bad_credentials")
        if not user.is_active:
            return LoginResult(False, reason="bad_credentials")
        actor = actor_for_user(s, user)
        if actor is None:
            return LoginResult(False, reason="bad_credentials")
        second_factor = second_factor_required(ctx, actor.role)
        if not (user.totp_secret_enc is not None and second_factor):
            # with a second factor, only a correct code clears the failure count (totp._check): a
            # correct password before each guess must not reset the lockout for guessing codes
            user.failed_logins = 0
        user.locked_until = None
        user.last_login_at = now
        token = pending = None
        if new_session and second_factor:
            # the password alone opens no session and ends none: a pending login waits for the code
            # (totp.verify / enrol then start the session), so knowing the password cannot sign the
            # user out again and again
            pending = new_session_token()
            user.pending_login = session_digest(pending)
        elif new_session:
            token = rotate_session(user)  # a fresh session at every web login
        audit.record(ctx, s, actor, "auth:login", "user", user.id, {"web": new_session})
        uow.commit()
        return LoginResult(True, actor=actor, session_token=token, pending_token=pending)


def actor_from_session_token(ctx: ServiceContext, token: str | None) -> Actor | None:
    if not token:
        return None
    with ctx.uow() as uow:
        user = uow.session.scalar(sa.select(User).where(User.session_token == session_digest(token)))
        if user is None or not user.is_active:
            return None
        return actor_for_user(uow.session, user)


def _rotate(user: User) -> None:
    rotate_session(user)  # nobody holds the new token: every session of the user ends


def logout(ctx: ServiceContext, actor: Actor) -> None:
    """End every session of this user (the cookie's token no longer matches)."""
    with ctx.uow() as uow:
        user = uow.session.get(User, actor.user_id)
        if user is not None:
            _rotate(user)
            audit.record(ctx, uow.session, actor, "auth:logout", "user", user.id, {})
        uow.commit()


def change_password(ctx: ServiceContext, actor: Actor, old: str, new: str) -> None:
    with ctx.uow() as uow:
        user = uow.session.get(User, actor.user_id)
        if user is None or not verify_password(user.password_hash, old):
            raise ValidationFailed(N_("the current password is wrong"))
        if old == new:
            raise ValidationFailed(N_("the new password must differ from the current one"))
        user.password_hash = hash_password(new, user_inputs=(user.username, user.display_name or ""))
        user.password_changed_at = ctx.now()
        _rotate(user)
        _revoke_tokens(uow.session, user.id, ctx.now())
        audit.record(ctx, uow.session, actor, "auth:password_changed", "user", user.id, {})
        uow.commit()


def set_active(ctx: ServiceContext, actor: Actor, user_id: uuid.UUID, active: bool) -> None:
    with ctx.uow() as uow:
        user = uow.session.get(User, user_id)
        if user is None:
            raise NotFound("user not found")
        user.is_active = active
        _rotate(user)
        _revoke_tokens(uow.session, user.id, ctx.now())
        audit.record(ctx, uow.session, actor, "user:enabled" if active else "user:disabled", "user", user.id, {})
        uow.commit()


def change_role(ctx: ServiceContext, actor: Actor, user_id: uuid.UUID, role: Role | str,
                unit_id: uuid.UUID | None = None, institution_id: uuid.UUID | None = None) -> None:
    role = Role(role)
    with ctx.uow() as uow:
        s = uow.session
        user = s.get(User, user_id)
        if user is None:
            raise NotFound("user not found")
        s.execute(sa.delete(RoleAssignment).where(RoleAssignment.user_id == user_id))
        s.add(RoleAssignment(user_id=user_id, role=role.value, unit_id=unit_id, institution_id=institution_id,
                             created_at=ctx.now()))
        _rotate(user)
        _revoke_tokens(s, user.id, ctx.now())
        audit.record(ctx, s, actor, "user:role_changed", "user", user.id, {"role": role.value})
        uow.commit()


def _revoke_tokens(s: Session, user_id: uuid.UUID, now: datetime) -> None:
    s.execute(sa.update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
              .values(revoked_at=now))


def issue_api_token(ctx: ServiceContext, username: str, password: str) -> tuple[str, datetime] | None:
    """Password → short-lived bearer token. Only the hash is stored. (Roles that need a second
    factor go through ``services.totp.issue_api_token`` instead.)"""
    res = authenticate(ctx, username, password, new_session=False)
    if not res.ok or res.actor is None:
        return None
    return mint_api_token(ctx, res.actor)


def mint_api_token(ctx: ServiceContext, actor: Actor) -> tuple[str, datetime]:
    """A new bearer token for an actor whose credentials were already checked."""
    token = secrets.token_urlsafe(32)
    now = ctx.now()
    expires = now + timedelta(minutes=ctx.settings.api_token_minutes)
    with ctx.uow() as uow:
        uow.session.add(ApiToken(user_id=actor.user_id, token_hash=_token_hash(token), created_at=now,
                                 expires_at=expires))
        audit.record(ctx, uow.session, actor, "auth:token_issued", "user", actor.user_id, {})
        uow.commit()
    return token, expires


def actor_from_api_token(ctx: ServiceContext, token: str | None) -> Actor | None:
    if not token:
        return None
    now = ctx.now()
    with ctx.uow() as uow:
        s = uow.session
        row = s.scalar(sa.select(ApiToken).where(ApiToken.token_hash == _token_hash(token)))
        if row is None or row.revoked_at is not None or row.expires_at <= now:
            return None
        user = s.get(User, row.user_id)
        if user is None or not user.is_active:
            return None
        return actor_for_user(s, user)


def revoke_api_token(ctx: ServiceContext, token: str) -> bool:
    with ctx.uow() as uow:
        res = cast(sa.CursorResult, uow.session.execute(
            sa.update(ApiToken).where(ApiToken.token_hash == _token_hash(token), ApiToken.revoked_at.is_(None))
            .values(revoked_at=ctx.now())))
        n = res.rowcount
        uow.commit()
        return bool(n)
