"""Test fixtures.

The database under test is SQLite unless ``MHP_TEST_DB_URL`` names a PostgreSQL database (the
Makefile runs the database-backed suite a second time that way). Every schema is built by
``alembic upgrade head``, once per worker; each test then runs inside a connection-level
transaction that is rolled back (services may commit freely: their sessions join with SAVEPOINTs).
Tests that need real commits across processes use ``fresh_db_url`` instead.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker

from mh_platform.config import load_settings
from mh_platform.core.clock import FixedClock
from mh_platform.db import migrate
from mh_platform.db.engine import make_engine, normalise_url
from mh_platform.services.context import ServiceContext, build_context
from mh_platform.services.keys import bootstrap_keys

PG_URL = os.environ.get("MHP_TEST_DB_URL", "")
IS_PG = PG_URL.startswith("postgres")
T0 = datetime(2026, 9, 14, 8, 0, tzinfo=UTC)


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _pg_admin() -> sa.Engine:
    base = normalise_url(PG_URL).rsplit("/", 1)[0] + "/postgres"
    return sa.create_engine(base, isolation_level="AUTOCOMMIT")


def _pg_db_url(name: str) -> str:
    return normalise_url(PG_URL).rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def template_db(tmp_path_factory):
    """A migrated database to copy from (SQLite file, or a PostgreSQL template database)."""
    if IS_PG:
        # unique per test process: two runs on one server never drop each other's template
        name = f"mhp_tpl_{_worker()}_{os.getpid()}"
        admin = _pg_admin()
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            c.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = _pg_db_url(name)
        migrate.upgrade(url)
        yield url
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    else:
        path = tmp_path_factory.mktemp("db") / "template.sqlite3"
        url = f"sqlite:///{path}"
        migrate.upgrade(url)
        yield url


@pytest.fixture(scope="session")
def db_engine(template_db):
    engine = make_engine(template_db)
    yield engine
    engine.dispose()


@pytest.fixture
def fresh_db_url(template_db, tmp_path) -> str:
    """A private, committed copy of the migrated schema (for multi-process tests)."""
    if IS_PG:
        name = f"mhp_t_{uuid.uuid4().hex[:12]}"
        tpl = template_db.rsplit("/", 1)[1]
        admin = _pg_admin()
        with admin.connect() as c:
            c.exec_driver_sql(f'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = \'{tpl}\'')
            c.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{tpl}"')
        yield _pg_db_url(name)
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
    else:
        src = pathlib.Path(template_db.removeprefix("sqlite:///"))
        dst = tmp_path / "fresh.sqlite3"
        shutil.copy(src, dst)
        yield f"sqlite:///{dst}"


@pytest.fixture(scope="session")
def master_key_file(tmp_path_factory) -> str:
    from mh_platform.services.keys import write_new_master_key_file

    path = tmp_path_factory.mktemp("keys") / "master.key"
    write_new_master_key_file(str(path))
    return str(path)


@pytest.fixture
def settings(template_db, master_key_file):
    return load_settings({"env": "test", "database_url": template_db, "master_key_file": master_key_file,
                          "secret_key": "t" * 40}, environ={})


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(T0)


@pytest.fixture
def ctx(db_engine, settings, clock) -> ServiceContext:
    """A service context whose every transaction is rolled back at the end of the test."""
    conn = db_engine.connect()
    outer = conn.begin()
    context = build_context(settings, clock=clock, engine=db_engine)
    context.sessions = sessionmaker(bind=conn, expire_on_commit=False, autoflush=False,
                                    join_transaction_mode="create_savepoint")
    bootstrap_keys(context)
    yield context
    outer.rollback()
    conn.close()


@pytest.fixture
def fresh_ctx(fresh_db_url, master_key_file, clock) -> ServiceContext:
    """A service context on a private database with real commits."""
    st = load_settings({"env": "test", "database_url": fresh_db_url, "master_key_file": master_key_file,
                        "secret_key": "t" * 40}, environ={})
    context = build_context(st, clock=clock)
    bootstrap_keys(context)
    yield context
    context.engine.dispose()
