"""`mhp keys init | rotate-master | reencrypt | shred`."""

from __future__ import annotations

import pathlib

import click


@click.group("keys")
def cli() -> None:
    """Master key, data keys, re-encryption and crypto-shredding."""


@cli.command()
@click.option("--file", "path", default="var/master.key", show_default=True, help="where to write the key file")
def init(path: str) -> None:
    """Create a new master key file (mode 0600). Refuses to overwrite an existing one."""
    from mh_platform.services.keys import write_new_master_key_file

    p = pathlib.Path(path)
    if p.exists():
        raise click.ClickException(f"{p} exists; refusing to overwrite a master key")
    p.parent.mkdir(parents=True, exist_ok=True)
    kid = write_new_master_key_file(str(p))
    click.echo(f"wrote master key {kid} to {p} (mode 0600). Back it up OFF this machine; never into the database.")
