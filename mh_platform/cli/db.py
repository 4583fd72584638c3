"""`mhp db upgrade | check | downgrade`."""

from __future__ import annotations

import click

from mh_platform.config import ConfigError, load_settings


def _url() -> str:
    try:
        return load_settings().database_url
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None


@click.group("db")
def cli() -> None:
    """Database schema (Alembic migrations)."""


@cli.command()
@click.option("--revision", default="head", show_default=True)
def upgrade(revision: str) -> None:
    """Apply migrations up to REVISION (creates the SQLite folder if needed), then the system keys."""
    import pathlib

    from mh_platform.db import migrate

    url = _url()
    if url.startswith("sqlite:///"):
        pathlib.Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(url, revision)
    if revision == "head":
        from mh_platform.cli._common import make_ctx

        make_ctx(bootstrap=True)
    click.echo("database is at " + revision)


@cli.command()
def check() -> None:
    """Fail if the models and the migrated schema differ."""
    from mh_platform.db import migrate

    migrate.check(_url())
    click.echo("no drift")


@cli.command()
@click.argument("revision")
def downgrade(revision: str) -> None:
    """Revert migrations down to REVISION (e.g. base)."""
    from mh_platform.db import migrate

    migrate.downgrade(_url(), revision)
    click.echo("database is at " + revision)
