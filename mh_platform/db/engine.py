"""Engines and sessions: SQLite (WAL, foreign keys, SAVEPOINT fix) and PostgreSQL (psycopg 3)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker


def normalise_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever driver the URL names (or none)."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


def make_engine(url: str, **kw: Any) -> sa.Engine:
    """An engine whose errors and logs never show bound parameters (they can hold sealed values or ids)."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        kw.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = sa.create_engine(url, hide_parameters=True, **kw)
        _configure_sqlite(engine)
    else:
        kw.setdefault("pool_pre_ping", True)
        kw.setdefault("pool_size", 10)
        kw.setdefault("max_overflow", 20)
        engine = sa.create_engine(url, hide_parameters=True, **kw)
    return engine


def _configure_sqlite(engine: sa.Engine) -> None:
    """WAL, foreign keys, and SQLAlchemy's documented pysqlite SAVEPOINT/BEGIN fix."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy emit BEGIN itself
        cur = dbapi_conn.cursor()
        if engine.url.database not in (None, "", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front: no read-then-upgrade deadlocks between writers.
        # A read unit of work (ctx.uow(read_only=True)) starts a plain BEGIN: WAL readers never wait.
        conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get("mhp_read") else "BEGIN IMMEDIATE")


def make_sessionmaker(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False, autoflush=False)
