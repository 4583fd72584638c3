"""Scheduler jobs of the screening area: campaign windows and reminders.

Each is a plain function ``(ctx, now=None) -> summary`` over the services; every step claims its
rows with a conditional UPDATE (or a unique outbox key), so a rerun or a second process is a no-op.
``campaign_windows`` and ``campaign_reminders`` are the entries in ``jobs.registry``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from mh_platform.services import campaigns
from mh_platform.services.context import ServiceContext


def open_due_campaigns(ctx: ServiceContext, now: datetime | None = None) -> dict[str, Any]:
    return campaigns.open_due(ctx, now or ctx.now())


def close_due_campaigns(ctx: ServiceContext, now: datetime | None = None) -> dict[str, Any]:
    return campaigns.close_due(ctx, now or ctx.now())


def send_reminders(ctx: ServiceContext, now: datetime | None = None) -> dict[str, Any]:
    return campaigns.send_reminders(ctx, now or ctx.now())


def campaign_windows(ctx: ServiceContext, now: datetime | None = None) -> dict[str, Any]:
    """Close what has ended, then open what has begun (one tick of the window job)."""
    now = now or ctx.now()
    return {**close_due_campaigns(ctx, now), **open_due_campaigns(ctx, now)}


def campaign_reminders(ctx: ServiceContext, now: datetime | None = None) -> dict[str, Any]:
    return send_reminders(ctx, now)
