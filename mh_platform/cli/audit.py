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
@click.option("--no-sequence", is_flag=True, help="do not chain pending entries first (read-only check)")
def verify(as_json: bool, no_sequence: bool) -> None:
    """Chain pending entries, then verify the whole chain; exit 1 and name the first bad entry if
    anything was changed."""
    from mh_platform.services import audit

    ctx = make_ctx()
    seq = None if no_sequence else audit.sequence(ctx)
    res = audit.verify(ctx)
    if as_json:
        echo_json({"ok": res.ok, "checked": res.checked, "first_bad_seq": res.first_bad_seq, "reason": res.reason,
                   "pending": res.pending, "chained_now": seq.chained if seq else 0})
    elif res.ok:
        click.echo(f"ok: {res.checked} entries verified" + (f", {res.pending} pending" if res.pending else ""))
    else:
        click.echo(f"BROKEN at entry {res.first_bad_seq}: {res.reason} ({res.checked} checked)")
    if not res.ok:
        sys.exit(1)
