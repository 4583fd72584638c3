"""Thin job wrappers: each calls one service with the scheduler's context and returns its summary."""

from __future__ import annotations

from typing import Any


def escalation_sweep(ctx: Any) -> dict[str, Any]:
    from mh_platform.services.escalation import sweep

    return sweep(ctx, ctx.now())


def notify_send_pending(ctx: Any) -> dict[str, Any]:
    from mh_platform.services.notify import send_pending

    return send_pending(ctx)


def model_retrain(ctx: Any) -> dict[str, Any]:
    """Off by default; when enabled, a new candidate artifact appears in models/ for review."""
    from mh_platform.risk.retrain import retrain_candidate

    out = retrain_candidate()
    return {"candidate": str(out) if out else None}
