"""``mhp referrals``: run the green-channel deadline sweep once; show the referral policy."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from mh_platform.cli._common import echo_json, make_ctx


@click.group("referrals")
def cli() -> None:
    """绿色通道转介 / green-channel referrals."""


@cli.command("sweep")
@click.option("--now", "now_text", default=None, help="Evaluate deadlines at this ISO-8601 instant (default: now).")
def sweep_cmd(now_text: str | None) -> None:
    """Escalate overdue referrals once each; prints {"checked": N, "escalated": [{"referral","missed","from_tier","to_tier"}]}."""
    from mh_platform.services.referrals import sweep

    now = None
    if now_text is not None:
        try:
            d = datetime.fromisoformat(now_text.replace("Z", "+00:00"))
        except ValueError:
            raise click.ClickException(f"--now must be ISO-8601 (e.g. 2026-09-15T09:00:00Z), not {now_text!r}") from None
        now = d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)
    ctx = make_ctx()
    echo_json(sweep(ctx, now or ctx.now()))


@cli.command("policy")
def policy_cmd() -> None:
    """The deadlines per level and state (from core/referral_policy.toml), in hours."""
    from mh_platform.core.referrals import default_referral_policy

    p = default_referral_policy()
    echo_json({lvl.value: {**{s.value: w.total_seconds() / 3600 for s, w in lp.windows.items()},
                           "first_appointment": lp.first_appointment.total_seconds() / 3600,
                           "chase_within": lp.chase_within.total_seconds() / 3600}
               for lvl, lp in p.levels.items()})
