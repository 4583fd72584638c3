"""Rate-limit counters in the platform's own database, shared by every worker and node.

Flask-Limiter keeps its counters in process memory by default: with gunicorn's 4 workers (or
several nodes on one PostgreSQL) each process counts on its own, so a "40 failed codes per 10
minutes" limit really allows 40 per process. ``web.rate_limit_storage.DatabaseStorage`` (the
``database://`` storage, the default) puts the counters here instead, so a limit means what it says
whatever the number of processes — without a Redis server to run.

Fixed windows, as Flask-Limiter's default strategy: ``hit`` adds to a key's counter and starts a new
window when the old one has ended, in one atomic upsert (``INSERT … ON CONFLICT DO UPDATE …
RETURNING``, on SQLite and PostgreSQL alike), so concurrent hits from several processes are never
lost. The stored key is an HMAC-SHA256 of the limiter's key under the deployment's secret key: the
limiter's keys hold client addresses, and none is stored in clear. Ended windows are deleted by the
``rate_limit_purge`` job. Time (seconds since the epoch) is passed in.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa

from mh_platform.db.bulk import upsert_insert
from mh_platform.db.models import RateLimitCounter
from mh_platform.services.context import ServiceContext

_T = cast(sa.Table, RateLimitCounter.__table__)
STORAGE_ERRORS: tuple[type[Exception], ...] = (sa.exc.SQLAlchemyError,)
"""What a failing database raises here (Flask-Limiter's ``base_exceptions`` for this storage)."""


def stored_key(ctx: ServiceContext, key: str) -> str:
    """The row key for a limiter key: HMAC-SHA256 under the secret key, hex (no address in clear)."""
    secret = ctx.settings.secret_key.encode()
    return hmac.new(secret, b"mhp-rate-limit\x00" + key.encode(), hashlib.sha256).hexdigest()


def hit(ctx: ServiceContext, key: str, expiry: float, amount: int, now: float) -> int:
    """Add ``amount`` to the key's counter (a new window of ``expiry`` seconds if none is running);
    returns the count in the window, this hit included."""
    k = stored_key(ctx, key)
    with ctx.uow() as uow:
        s = uow.session
        ins = upsert_insert(s, _T).values(key=k, count=amount, expires_at=now + expiry)
        ended = _T.c.expires_at <= now
        stmt = ins.on_conflict_do_update(index_elements=[_T.c.key], set_={
            "count": sa.case((ended, ins.excluded.count), else_=_T.c.count + ins.excluded.count),
            "expires_at": sa.case((ended, ins.excluded.expires_at), else_=_T.c.expires_at),
        }).returning(_T.c.count)
        n = int(s.execute(stmt).scalar_one())
        uow.commit()
        return n


def _window(ctx: ServiceContext, key: str, now: float) -> tuple[int, float] | None:
    with ctx.uow(read_only=True) as uow:
        row = uow.session.execute(sa.select(_T.c.count, _T.c.expires_at).where(
            _T.c.key == stored_key(ctx, key), _T.c.expires_at > now)).first()
        return (int(row[0]), float(row[1])) if row is not None else None


def count(ctx: ServiceContext, key: str, now: float) -> int:
    """The key's count in its running window (0 when none runs)."""
    w = _window(ctx, key, now)
    return w[0] if w else 0


def window_end(ctx: ServiceContext, key: str, now: float) -> float:
    """When the key's running window ends (``now`` when none runs)."""
    w = _window(ctx, key, now)
    return w[1] if w else now


def clear(ctx: ServiceContext, key: str) -> None:
    with ctx.uow() as uow:
        uow.session.execute(sa.delete(_T).where(_T.c.key == stored_key(ctx, key)))
        uow.commit()


def clear_all(ctx: ServiceContext) -> int:
    with ctx.uow() as uow:
        n = cast(sa.CursorResult, uow.session.execute(sa.delete(_T))).rowcount
        uow.commit()
        return int(n or 0)


def check(ctx: ServiceContext) -> bool:
    """The storage answers (Flask-Limiter's health check); False when the database does not."""
    try:
        with ctx.uow(read_only=True) as uow:
            return uow.session.execute(sa.select(sa.literal(1))).scalar_one() == 1
    except STORAGE_ERRORS:
        return False


def purge_expired(ctx: ServiceContext, now: datetime | None = None) -> dict[str, Any]:
    """Delete the counters whose window has ended (the ``rate_limit_purge`` job)."""
    t = (now or ctx.now()).timestamp()
    with ctx.uow() as uow:
        n = cast(sa.CursorResult, uow.session.execute(sa.delete(_T).where(_T.c.expires_at <= t))).rowcount
        uow.commit()
        return {"deleted": int(n or 0)}
