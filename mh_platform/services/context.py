"""What every service call gets: the context (database, clock, keys, settings) and the actor.

A service is a plain function ``fn(ctx, actor, ...)`` that opens ``with ctx.uow() as uow:``,
does its work in ``uow.session`` and calls ``uow.commit()`` once. Pages, the JSON API, the CLI and
scheduler jobs all call services the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from mh_platform.config import Settings
from mh_platform.core.clock import Clock, SystemClock
from mh_platform.core.types import Role
from mh_platform.db.engine import make_engine, make_sessionmaker


@dataclass(frozen=True)
class Actor:
    """Who is acting, in which role and unit, and why (the purpose is logged with every disclosure)."""

    user_id: uuid.UUID | None
    role: Role | None
    unit_id: uuid.UUID | None = None
    unit_path: str | None = None
    institution_id: uuid.UUID | None = None
    username: str = ""
    student_id: uuid.UUID | None = None  # a class monitor is a student
    purpose: str = "routine"

    def with_purpose(self, purpose: str) -> Actor:
        return Actor(self.user_id, self.role, self.unit_id, self.unit_path, self.institution_id,
                     self.username, self.student_id, purpose)


SYSTEM = Actor(user_id=None, role=None, username="system", purpose="system")


class _AfterCommit:
    """What both units of work share: hooks that run once the transaction has committed."""

    def __init__(self) -> None:
        self._after_commit: list[Callable[[], None]] = []
        self.committed = False

    def after_commit(self, fn: Callable[[], None]) -> None:
        self._after_commit.append(fn)

    def _committed(self) -> None:
        self.committed = True
        hooks, self._after_commit = self._after_commit, []
        for fn in hooks:
            fn()


SESSION_CTX = "mhp_ctx"  # session.info key: the ServiceContext whose unit of work opened the session


class UnitOfWork(_AfterCommit):
    """One transaction: rolls back unless ``commit()`` was called; runs after-commit hooks."""

    def __init__(self, factory: sessionmaker[Session], read_only: bool = False, ctx: Any = None) -> None:
        super().__init__()
        self._factory = factory
        self._read_only = read_only
        self._ctx = ctx
        self.session: Session

    def __enter__(self) -> UnitOfWork:
        self.session = self._factory()
        if self._ctx is not None:  # for helpers that take a session only (``students.enrol``)
            self.session.info[SESSION_CTX] = self._ctx
        if self._read_only:  # SQLite: a plain BEGIN (a read snapshot), not BEGIN IMMEDIATE (the write lock)
            self.session.info["mhp_read_only"] = True
            self.session.connection(execution_options={"mhp_read": True})
        return self

    def commit(self) -> None:
        self.session.commit()
        self._committed()

    def __exit__(self, *exc: Any) -> None:
        if not self.committed:
            self.session.rollback()
        self.session.close()


class CoreUnitOfWork(_AfterCommit):
    """One transaction on a Core connection, without an ORM Session: for hot paths whose statements
    are all Core (the autosave). The same contract as ``UnitOfWork``: rolls back unless ``commit()``
    was called, runs after-commit hooks; ``read_only`` ones must not write (SQLite: a plain BEGIN).

    ``connection`` is the transaction's connection. ``session`` is an ORM Session in the *same*
    transaction, made on first use, for a rare branch that needs the ORM (the flag path, creating a
    student's first data key): it is flushed at ``commit()`` and never ends the transaction itself.
    An ORM Session costs ~40 µs per unit of work here, over half of a short transaction's overhead
    on SQLite, which is why the hot path does without one.

    ``bind`` is what the context's sessions are bound to: an Engine (a connection from its pool, one
    transaction), or a Connection already in a transaction (the test harness's outer transaction):
    then, like those sessions (``join_transaction_mode="create_savepoint"``), a SAVEPOINT on it."""

    def __init__(self, bind: sa.Engine | sa.Connection, read_only: bool = False) -> None:
        super().__init__()
        self._bind = bind
        self.read_only = read_only
        self.connection: sa.Connection
        self._nested: sa.NestedTransaction | None = None
        self._session: Session | None = None

    def __enter__(self) -> CoreUnitOfWork:
        if isinstance(self._bind, sa.Connection):
            self.connection = self._bind
            self._nested = self._bind.begin_nested()
        else:
            self.connection = self._bind.connect()
            if self.read_only:  # SQLite: a plain BEGIN (a read snapshot), not BEGIN IMMEDIATE (the write lock)
                self.connection.execution_options(mhp_read=True)
        return self

    @property
    def session(self) -> Session:
        if self._session is None:
            if not self.connection.in_transaction():  # join this unit's transaction, never start its own
                self.connection.begin()
            # rollback_only: the Session's commit() flushes but leaves the transaction to this unit of work
            self._session = Session(bind=self.connection, expire_on_commit=False, autoflush=False,
                                    join_transaction_mode="rollback_only")
            if self.read_only:
                self._session.info["mhp_read_only"] = True
        return self._session

    def commit(self) -> None:
        if self._session is not None:
            self._session.commit()  # flushes what the ORM branch added; the transaction stays open
        if self._nested is not None:
            self._nested.commit()
        else:
            self.connection.commit()
        self._committed()

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._session is not None:
                self._session.close()
        finally:
            if self._nested is not None:
                if self._nested.is_active:
                    self._nested.rollback()
            else:
                if not self.committed:
                    self.connection.rollback()
                self.connection.close()


@dataclass
class ServiceContext:
    settings: Settings
    engine: sa.Engine
    sessions: sessionmaker[Session]
    clock: Clock = field(default_factory=SystemClock)
    keyring: Any = None  # mh_platform.services.keys.KeyService, set by build_context
    audit_key: bytes = b""
    extras: dict[str, Any] = field(default_factory=dict)

    def uow(self, read_only: bool = False) -> UnitOfWork:
        """A unit of work; ``read_only`` ones must not write (SQLite starts them without the write lock)."""
        return UnitOfWork(self.sessions, read_only, self)

    def core_uow(self, read_only: bool = False) -> CoreUnitOfWork:
        """A unit of work on a Core connection (``uow.connection``; ``uow.session`` only on demand)."""
        return CoreUnitOfWork(self.sessions.kw.get("bind") or self.engine, read_only)

    def now(self):  # noqa: ANN201 - datetime
        return self.clock.now()


def build_context(settings: Settings, clock: Clock | None = None, engine: sa.Engine | None = None) -> ServiceContext:
    """Wire the context for a process (web app, CLI command, scheduler)."""
    eng = engine or make_engine(settings.database_url)
    ctx = ServiceContext(settings=settings, engine=eng, sessions=make_sessionmaker(eng), clock=clock or SystemClock())
    from mh_platform.services import keys as key_service  # late: keys needs the context type

    key_service.attach(ctx)
    return ctx
