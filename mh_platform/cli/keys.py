"""`mhp keys init | add-master | rotate-master | rotate-data-keys | reencrypt |
shred-request | shred-approve | shred-cancel | shred-list`."""

from __future__ import annotations

import pathlib
import uuid
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from mh_platform.services.context import Actor, ServiceContext


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


# ---- two-person crypto-shredding ------------------------------------------------------------
# Each step names the person doing it (--user) and asks for their password (and TOTP code when
# their role needs one): the anonymous CLI actor can never destroy a key. See docs/crypto.md §4.


def _person(ctx: ServiceContext, username: str) -> Actor:
    """Authenticate the named user at the terminal: password, then a TOTP code if their role needs one."""
    from mh_platform.services import auth, totp

    password = click.prompt(f"Password for {username}", hide_input=True, default="", show_default=False)
    res = auth.authenticate(ctx, username, password, new_session=False)
    if not res.ok or res.actor is None:
        raise click.ClickException(f"authentication failed for {username}")
    if not totp.required_for(ctx, res.actor.role):
        return res.actor
    code = click.prompt(f"TOTP code for {username}", default="", show_default=False).strip()
    if not code:
        raise click.ClickException(f"a TOTP code is required for {username}")
    actor = totp.verify_code(ctx, res.actor.user_id, code)
    if actor is None:
        raise click.ClickException(f"authentication failed for {username} (TOTP)")
    return actor


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise click.ClickException(f"not {what} (UUID): {value!r}") from None


_USER = click.option("--user", "username", required=True, help="your username (you are asked for your password)")


@cli.command("shred-request")
@click.argument("student_id")
@click.option("--reason", required=True, help="a reason code ([a-z0-9_], no free text), e.g. guardian_request")
@_USER
def shred_request(student_id: str, reason: str, username: str) -> None:
    """Step 1 of 2: request the crypto-shredding of one student (by UUID). Destroys nothing: a
    different user with the right role must approve it within 7 days (shred-approve)."""
    from mh_platform.cli._common import echo_json, make_ctx
    from mh_platform.services import key_ops

    sid = _uuid(student_id, "a student id")
    ctx = make_ctx()
    echo_json(key_ops.request_erasure(ctx, _person(ctx, username), sid, reason))


@cli.command("shred-approve")
@click.argument("request_id")
@_USER
@click.confirmation_option(prompt="Approving destroys the student's keys: their encrypted data is gone for good, "
                                  "backups included. Continue?")
def shred_approve(request_id: str, username: str) -> None:
    """Step 2 of 2: approve another user's erasure request; the student's keys are destroyed now."""
    from mh_platform.cli._common import echo_json, make_ctx
    from mh_platform.services import key_ops

    rid = _uuid(request_id, "an erasure request id")
    ctx = make_ctx()
    echo_json(key_ops.approve_erasure(ctx, _person(ctx, username), rid))


@cli.command("shred-cancel")
@click.argument("request_id")
@_USER
def shred_cancel(request_id: str, username: str) -> None:
    """Close a pending erasure request without destroying anything (cancel your own, reject another's)."""
    from mh_platform.cli._common import echo_json, make_ctx
    from mh_platform.services import key_ops

    rid = _uuid(request_id, "an erasure request id")
    ctx = make_ctx()
    echo_json(key_ops.cancel_erasure(ctx, _person(ctx, username), rid))


@cli.command("shred-list")
@_USER
def shred_list(username: str) -> None:
    """Pending erasure requests (ids, reason codes and times only)."""
    from mh_platform.cli._common import echo_json, make_ctx
    from mh_platform.services import key_ops

    ctx = make_ctx()
    echo_json(key_ops.pending_erasures(ctx, _person(ctx, username)))
