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


@cli.command("add-master")
@click.option("--file", "path", default=None, help="the key file (default: MHP_MASTER_KEY_FILE setting)")
def add_master(path: str | None) -> None:
    """Add a new master key version to the key file and make it primary (then run rotate-master)."""
    from mh_platform.config import load_settings
    from mh_platform.crypto.keyring import add_master_key_version

    kid = add_master_key_version(path or load_settings().master_key_file)
    click.echo(f"new primary master key {kid}; now run `mhp keys rotate-master`")


@cli.command("rotate-master")
def rotate_master() -> None:
    """Re-wrap every data key under the primary master key (resumable, idempotent)."""
    from mh_platform.cli._common import CLI_ACTOR, echo_json, make_ctx
    from mh_platform.services import key_ops

    echo_json(key_ops.rotate_master(make_ctx(), CLI_ACTOR))


@cli.command("rotate-data-keys")
def rotate_data_keys() -> None:
    """New active data keys for every student and the system; then run `mhp keys reencrypt`."""
    from mh_platform.cli._common import CLI_ACTOR, echo_json, make_ctx
    from mh_platform.services import key_ops

    echo_json(key_ops.rotate_data_keys(make_ctx(), CLI_ACTOR))


@cli.command()
@click.option("--batch", default=500, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--pause-ms", default=0, show_default=True, type=click.IntRange(0, 60_000),
              help="sleep between batches to leave room for the serving app")
def reencrypt(batch: int, pause_ms: int) -> None:
    """Move every value off inactive keys, in batches; safe to kill and re-run; online."""
    from mh_platform.cli._common import CLI_ACTOR, echo_json, make_ctx
    from mh_platform.services import key_ops

    echo_json(key_ops.reencrypt(make_ctx(), CLI_ACTOR, batch=batch, pause_s=pause_ms / 1000).as_dict())


@cli.command()
@click.argument("student_id")
@click.option("--reason", default="erasure_request", show_default=True, help="a reason code (no free text)")
@click.confirmation_option(prompt="This destroys the student's key: their encrypted data is gone for good. Continue?")
def shred(student_id: str, reason: str) -> None:
    """Crypto-shred one student (by UUID): every encrypted field of theirs becomes unreadable."""
    import uuid

    from mh_platform.cli._common import CLI_ACTOR, echo_json, make_ctx
    from mh_platform.services import key_ops

    try:
        sid = uuid.UUID(student_id)
    except ValueError:
        raise click.ClickException(f"not a student id (UUID): {student_id!r}") from None
    echo_json(key_ops.shred_student(make_ctx(), CLI_ACTOR, sid, reason))
