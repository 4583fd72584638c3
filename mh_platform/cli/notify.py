"""``mhp notify``: deliver pending outbox messages; show the outbox by status."""

from __future__ import annotations

import click

from mh_platform.cli._common import echo_json, make_ctx


@click.group("notify")
def cli() -> None:
    """通知 / notifications (outbox → inbox, email, WeCom)."""


@cli.command("send-pending")
@click.option("--limit", type=int, default=500, show_default=True, help="At most this many messages.")
def send_pending_cmd(limit: int) -> None:
    """Claim and deliver due messages once; prints counts as JSON."""
    from mh_platform.services.notify import send_pending

    if limit <= 0:
        raise click.ClickException("--limit must be positive")
    echo_json(send_pending(make_ctx(), limit=limit))


@cli.command("status")
def status_cmd() -> None:
    """Outbox rows by channel and status (no contents)."""
    import sqlalchemy as sa

    from mh_platform.db.models import Outbox

    ctx = make_ctx(bootstrap=False)
    with ctx.uow() as uow:
        rows = uow.session.execute(sa.select(Outbox.channel, Outbox.status, sa.func.count())
                                   .group_by(Outbox.channel, Outbox.status)).all()
    echo_json([{"channel": c, "status": st, "count": n} for c, st, n in rows])
