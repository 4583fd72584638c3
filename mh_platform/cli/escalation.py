"""``mhp escalation``: run one sweep (optionally at a given instant), show the policy."""

from __future__ import annotations

from datetime import UTC, datetime

import click

from mh_platform.cli._common import echo_json, make_ctx


@click.group("escalation")
def cli() -> None:
    """预警升级 / four-tier escalation."""


def _parse_now(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        d = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.ClickException(f"--now must be ISO-8601 (e.g. 2026-09-14T09:00:00Z), not {text!r}") from None
    return d.replace(tzinfo=UTC) if d.tzinfo is None else d.astimezone(UTC)


@cli.command("sweep")
@click.option("--now", "now_text", default=None, help="Evaluate deadlines at this ISO-8601 instant (default: now).")
def sweep_cmd(now_text: str | None) -> None:
    """Run one sweep; prints {"checked": N, "escalated": [{"flag","from_tier","to_tier","level"}]}."""
    from mh_platform.services.escalation import sweep

    now = _parse_now(now_text)
    ctx = make_ctx()
    result = sweep(ctx, now or ctx.now())
    echo_json({"checked": result["checked"], "escalated": result["escalated"]})


@cli.command("policy")
def policy_cmd() -> None:
    """Print the escalation policy in force (deadlines per level, ceilings, who is told)."""
    from mh_platform.services.flags_access import escalation_policy

    ctx = make_ctx(bootstrap=False)
    p = escalation_policy(ctx)
    echo_json({lv.value: {"ack_within_h": lp.deadlines.ack_within.total_seconds() / 3600,
                          "handle_within_h": lp.deadlines.handle_within.total_seconds() / 3600,
                          "ceiling": lp.ceiling.value, "inform_on_miss": [r.value for r in lp.inform_on_miss],
                          "inform_county_at_once": lp.inform_county_at_once,
                          "inform_city_after_h": None if lp.inform_city_after is None
                          else lp.inform_city_after.total_seconds() / 3600}
               for lv, lp in p.levels.items()})
