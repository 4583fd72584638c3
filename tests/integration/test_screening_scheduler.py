"""The campaign window job run by the real scheduler process (`mhp scheduler run --once`)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from screening_world import build_world

from mh_platform.db.models import Campaign, EventLog
from mh_platform.jobs.registry import job_by_id
from mh_platform.services import campaigns

MHP = os.path.join(os.path.dirname(sys.executable), "mhp")


def _run(ctx, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MHP_DATABASE_URL=ctx.settings.database_url, MHP_MASTER_KEY_FILE=ctx.settings.master_key_file,
               MHP_ENV="test", MHP_SECRET_KEY="s" * 40, MHP_CONFIG_FILE="/nonexistent")
    env.pop("MHP_MASTER_KEY", None)
    return subprocess.run([MHP, "scheduler", "run", "--once", "--only", "campaign_windows", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_scheduler_process_opens_and_closes_on_schedule(fresh_ctx):
    ctx = fresh_ctx
    assert job_by_id("campaign_windows").func == "mh_platform.jobs.campaign_jobs:campaign_windows"
    world = build_world(ctx)
    real_now = datetime.now(UTC)  # the scheduler process runs on the system clock
    cid = campaigns.create(ctx, world.counsellor, name="定时", unit_ids=[world.school.id], grades=[7],
                           opens_at=real_now - timedelta(minutes=1), closes_at=real_now + timedelta(days=1))
    later = campaigns.create(ctx, world.counsellor, name="以后", unit_ids=[world.school.id], grades=[7],
                             opens_at=real_now + timedelta(days=2), closes_at=real_now + timedelta(days=3))
    r = _run(ctx)
    assert r.returncode == 0, r.stderr
    r = _run(ctx)  # a second run changes nothing
    assert r.returncode == 0, r.stderr
    with ctx.uow() as uow:
        s = uow.session
        assert s.get(Campaign, cid).status == "open" and s.get(Campaign, later).status == "scheduled"
        assert s.scalar(sa.select(sa.func.count()).select_from(EventLog).where(EventLog.kind == "campaign:opened")) == 1
        s.execute(sa.update(Campaign).where(Campaign.id == cid).values(closes_at=real_now - timedelta(seconds=1),
                                                                       opens_at=real_now - timedelta(hours=1)))
        uow.commit()
    r = _run(ctx)
    assert r.returncode == 0, r.stderr
    with ctx.uow() as uow:
        s = uow.session
        assert s.get(Campaign, cid).status == "closed" and s.get(Campaign, cid).closed_at is not None
        assert s.get(Campaign, later).status == "scheduled"
