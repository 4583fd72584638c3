"""One scheduler leader across processes: the lock, takeover after SIGKILL, graceful SIGTERM."""

from __future__ import annotations

import json
import signal
import time

import pytest

from mh_platform.jobs.leader import LeaderLock
from mh_platform.jobs.registry import JOBS, JobSpec, check_registry, every
from mh_platform.jobs.scheduler import build_scheduler, select_jobs


def test_registry_ids_unique_and_safe():
    check_registry()
    ids = [j.id for j in JOBS]
    assert len(ids) == len(set(ids))
    assert "escalation_sweep" in ids and "notify_send_pending" in ids
    assert all(j.max_instances == 1 and j.coalesce for j in JOBS)
    with pytest.raises(ValueError, match="duplicate"):
        check_registry((JOBS[0], JOBS[0]))
    with pytest.raises(ValueError, match="module:function"):
        check_registry((JobSpec("x", every(minutes=1), "no_colon"),))
    with pytest.raises(ValueError, match="unknown job"):
        select_jobs(["nope"])


def test_scheduler_built_from_registry_only(fresh_ctx):
    sched = build_scheduler(fresh_ctx, JOBS)
    jobs = {j.id: j for j in sched.get_jobs()}
    assert set(jobs) == {j.id for j in JOBS}
    sweep = jobs["escalation_sweep"]
    assert sweep.max_instances == 1 and sweep.coalesce is True and sweep.misfire_grace_time == 60


def test_lock_is_exclusive_and_released(fresh_db_url):
    a, b = LeaderLock(fresh_db_url), LeaderLock(fresh_db_url)
    try:
        assert a.try_acquire() is True
        assert a.still_held() is True
        assert b.try_acquire() is False
        a.release()
        assert b.try_acquire() is True
        assert a.try_acquire() is False
    finally:
        a.release()
        b.release()


def _leader_of(procs) -> list:
    return [p for p in procs if '"scheduler": "leader"' in p.text()]


def test_follower_takes_over_when_leader_is_killed(spawn):
    args = ["scheduler", "run", "--only", "notify_send_pending", "--tick", "0.5", "--retry", "0.3",
            "--heartbeat", "0.5"]
    p1 = spawn(args, "s1")
    assert p1.wait_for('"scheduler": "leader"', 60), p1.text()
    p2 = spawn(args, "s2")
    assert p2.wait_for('"scheduler": "start"', 60), p2.text()
    time.sleep(2.0)
    assert '"scheduler": "leader"' not in p2.text(), "two leaders at once"
    assert p1.wait_for('"job": "notify_send_pending"', 30), p1.text()
    p1.p.send_signal(signal.SIGKILL)
    p1.p.wait(10)
    assert p2.wait_for('"scheduler": "leader"', 30), p2.text()
    assert p2.wait_for('"job": "notify_send_pending"', 30), p2.text()


def test_sigterm_stops_gracefully_and_hands_over(spawn):
    args = ["scheduler", "run", "--only", "notify_send_pending", "--tick", "0.5", "--retry", "0.3",
            "--heartbeat", "0.5"]
    p1 = spawn(args, "s1")
    assert p1.wait_for('"scheduler": "leader"', 60), p1.text()
    p2 = spawn(args, "s2")
    assert p2.wait_for('"scheduler": "start"', 60)
    assert p1.stop(signal.SIGTERM) == 0, p1.text()
    assert '"scheduler": "stopped"' in p1.text()
    assert p2.wait_for('"scheduler": "leader"', 30), p2.text()


def test_run_once_runs_each_job_and_exits(fresh_db_url, master_key_file):
    from procs_helpers import run_mhp

    out = run_mhp(["scheduler", "run", "--once", "--only", "notify_send_pending"], fresh_db_url, master_key_file)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"ran": [{"job": "notify_send_pending", "ok": True}]}
