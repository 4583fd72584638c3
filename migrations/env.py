"""Alembic environment: metadata from mh_platform.db.models; batch mode on SQLite; PG lock + timeouts."""

from __future__ import annotations

from alembic import context

from mh_platform.config import load_settings
from mh_platform.db.engine import make_engine, normalise_url
from mh_platform.db.models import Base

config = context.config
target_metadata = Base.metadata


def _url() -> str:
    url = config.attributes.get("url") or config.get_main_option("sqlalchemy.url")
    return normalise_url(url or load_settings().database_url)


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      render_as_batch=_url().startswith("sqlite"), compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = make_engine(_url())
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


def _run(conn) -> None:
    is_pg = conn.dialect.name == "postgresql"
    context.configure(connection=conn, target_metadata=target_metadata,
                      render_as_batch=conn.dialect.name == "sqlite", compare_type=True,
                      transaction_per_migration=False)
    with context.begin_transaction():
        if is_pg:
            conn.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(hashtext('mhp-alembic'))")
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
