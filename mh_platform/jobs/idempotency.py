"""Run-once records for job steps (``job_run``): a step with a given key completes once.

    if claim_run(ctx, "reminders", f"reminders:{campaign_id}:{day}"):
        ...do the work (idempotent itself)...
        finish_run(ctx, run_key, {"sent": n})

A claim left unfinished by a killed process may be taken again after ``stale_after``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from mh_platform.db.models import JobRun


def claim_run(ctx: Any, job_id: str, run_key: str, *, stale_after: timedelta = timedelta(minutes=30)) -> bool:
    """True when this caller now owns ``run_key`` (new, or an abandoned unfinished claim)."""
    now = ctx.now()
    with ctx.uow() as uow:
        s = uow.session
        try:
            with s.begin_nested():
                s.add(JobRun(job_id=job_id, run_key=run_key, started_at=now))
                s.flush()
            uow.commit()
            return True
        except sa.exc.IntegrityError:
            pass
        res = s.execute(sa.update(JobRun).where(JobRun.run_key == run_key, JobRun.finished_at.is_(None),
                                                JobRun.started_at < now - stale_after)
                        .values(started_at=now))
        uow.commit()
        return res.rowcount == 1


def finish_run(ctx: Any, run_key: str, detail: dict[str, Any] | None = None) -> None:
    with ctx.uow() as uow:
        uow.session.execute(sa.update(JobRun).where(JobRun.run_key == run_key)
                            .values(finished_at=ctx.now(), detail=detail))
        uow.commit()


def already_done(ctx: Any, run_key: str) -> bool:
    with ctx.uow() as uow:
        return uow.session.scalar(sa.select(JobRun.finished_at).where(JobRun.run_key == run_key)) is not None
