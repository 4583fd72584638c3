"""`mhp audit verify`: walk the hash-chained event log and report the first bad entry."""

from __future__ import annotations

import sys

import click

from mh_platform.cli._common import echo_json, make_ctx


@click.group("audit")
def cli() -> None:
    """The tamper-evident event log."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="print a JSON object")
def verify(as_json: bool) -> None:
    """Verify the whole chain; exit 1 and name the first bad entry if anything was changed."""
    from mh_platform.services import audit

    res = audit.verify(make_ctx())
    if as_json:
        echo_json({"ok": res.ok, "checked": res.checked, "first_bad_seq": res.first_bad_seq, "reason": res.reason})
    elif res.ok:
        click.echo(f"ok: {res.checked} entries verified")
    else:
        click.echo(f"BROKEN at entry {res.first_bad_seq}: {res.reason} ({res.checked} checked)")
    if not res.ok:
        sys.exit(1)
