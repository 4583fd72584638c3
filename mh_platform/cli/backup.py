"""`mhp backup create | restore`: a restore replays the erasure ledger."""

from __future__ import annotations

import click

from mh_platform.cli._common import echo_json, make_ctx


@click.group("backup")
def cli() -> None:
    """Database backups."""


@cli.command()
@click.argument("dest")
def create(dest: str) -> None:
    """Write a consistent backup of the database to DEST (SQLite copy or pg_dump -Fc)."""
    from mh_platform.services import key_ops

    p = key_ops.create_backup(make_ctx(), dest)
    click.echo(f"backup written to {p}")


@cli.command()
@click.argument("src")
@click.confirmation_option(prompt="This replaces the whole database with the backup. Continue?")
def restore(src: str) -> None:
    """Restore SRC over the database, then re-shred every erased student (ledger replay)."""
    from mh_platform.services import key_ops

    echo_json(key_ops.restore_backup(make_ctx(bootstrap=False), src))
