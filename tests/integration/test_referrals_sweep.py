"""The referral deadline sweep under concurrency: two sweepers (own contexts, own connections, real
commits) racing over the same overdue referrals escalate each exactly once and queue each notice once."""

from __future__ import annotations

import threading
from datetime import timedelta

import sqlalchemy as sa
from cases_world import build, confirmed_flag, quick_argon2  # noqa: F401 - autouse fixture

from mh_platform.core.clock import FixedClock
from mh_platform.db.models import EventLog, Outbox, Referral, ReferralEvent
from mh_platform.services import audit, cases, referrals
from mh_platform.services.context import build_context
from mh_platform.services.keys import bootstrap_keys

N = 24


def test_concurrent_sweepers_escalate_each_referral_once(fresh_ctx):
    ctx = fresh_ctx
    w = build(ctx, n=N)
    c = w.actors["counsellor.a"]
    for i, sid in enumerate(w.students):
        cid = cases.open_case(ctx, c, confirmed_flag(ctx, sid, "red"))
        rid = referrals.create_referral(ctx, c, cid, institution_id=w.inst1 if i % 2 else w.inst2, reason="r")
        referrals.transition(ctx, c, rid, "submit", consent="guardian")
    later = ctx.now() + timedelta(hours=25)

    results: list[dict] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def sweeper() -> None:
        try:
            own = build_context(ctx.settings, clock=FixedClock(later))
            bootstrap_keys(own)
            barrier.wait(timeout=30)
            results.append(referrals.sweep(own, later))
            own.engine.dispose()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=sweeper) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    escalated = [e["referral"] for r in results for e in r["escalated"]]
    assert len(escalated) == N and len(set(escalated)) == N  # each once, whoever won the claim
    with ctx.uow() as uow:
        s = uow.session
        assert set(s.scalars(sa.select(Referral.escalations))) == {1}
        assert set(s.scalars(sa.select(Referral.tier))) == {"county"}
        n_events = s.scalar(sa.select(sa.func.count()).select_from(ReferralEvent)
                            .where(ReferralEvent.detail["kind"].as_string() == "referral:escalated"))
        assert n_events == N
        assert s.scalar(sa.select(sa.func.count()).select_from(EventLog)
                        .where(EventLog.kind == "referral:escalated")) == N
        rows = s.execute(sa.select(Outbox.recipient_user_id, Outbox.channel, Outbox.params)
                         .where(Outbox.template == "referral_overdue")).all()
        # two county officers of county A, inbox + email each, once per referral
        assert len(rows) == N * 2 * 2
    assert referrals.sweep(ctx, later)["escalated"] == []
    assert audit.sequence(ctx).rejected == 0 and audit.verify(ctx).ok


def test_cli_sweep_prints_the_summary_and_refuses_a_bad_instant(fresh_ctx, fresh_db_url, master_key_file):
    import json
    import os
    import pathlib
    import subprocess

    ctx = fresh_ctx
    w = build(ctx, n=1)
    c = w.actors["counsellor.a"]
    cid = cases.open_case(ctx, c, confirmed_flag(ctx, w.students[0], "red"))
    rid = referrals.create_referral(ctx, c, cid, institution_id=w.inst1, reason="r")
    referrals.transition(ctx, c, rid, "submit", consent="guardian")
    repo = pathlib.Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MHP_")}
    env.update({"MHP_ENV": "test", "MHP_DATABASE_URL": fresh_db_url, "MHP_MASTER_KEY_FILE": master_key_file,
                "MHP_SECRET_KEY": "t" * 40, "MHP_CONFIG_FILE": "/nonexistent/mhp.toml"})
    mhp = str(repo / ".venv" / "bin" / "mhp")

    def run(*args):
        return subprocess.run([mhp, "referrals", "sweep", *args], env=env, capture_output=True, text=True,
                              timeout=120, cwd=str(repo), check=False)

    late = run("--now", (ctx.now() + timedelta(hours=24, minutes=1)).isoformat())
    assert late.returncode == 0, late.stderr
    assert json.loads(late.stdout) == {"checked": 1, "escalated": [
        {"referral": str(rid), "missed": "requested", "from_tier": "school", "to_tier": "county"}]}
    bad = run("--now", "yesterday")
    assert bad.returncode != 0 and "ISO-8601" in bad.stderr and "Traceback" not in bad.stderr
