"""Every scheduled job, declared as data with a fixed id (APScheduler ``replace_existing`` safe).

A job function is named by a dotted path ``"package.module:function"`` (imported only when the
scheduler starts, so this module stays cheap and free of import cycles) and is called as
``fn(ctx)`` with the scheduler process's ``ServiceContext``; it may return a small JSON-able dict
that is logged. Every job step must be idempotent: the scheduler runs it again after a crash, and
a job may overlap with the same service called from the CLI.

To add a job, append ONE line to ``JOBS``::

    JobSpec("campaign_windows", every(minutes=1), "mh_platform.jobs.campaign_jobs:open_and_close"),
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Trigger:
    """An APScheduler trigger as data: ``kind`` is "interval" or "cron", ``args`` its keyword arguments."""

    kind: str
    args: Mapping[str, Any] = field(default_factory=dict)

    def seconds(self) -> float | None:
        """Length of an interval trigger in seconds (None for cron)."""
        if self.kind != "interval":
            return None
        a = self.args
        return (a.get("weeks", 0) * 604800 + a.get("days", 0) * 86400 + a.get("hours", 0) * 3600
                + a.get("minutes", 0) * 60 + a.get("seconds", 0))


def every(**kw: int) -> Trigger:
    """``every(minutes=1)``, ``every(hours=6)`` — an interval trigger."""
    if not kw or any(v <= 0 for v in kw.values()):
        raise ValueError("every() needs positive weeks/days/hours/minutes/seconds")
    return Trigger("interval", MappingProxyType(dict(kw)))


def cron(**kw: Any) -> Trigger:
    """``cron(hour=2, minute=30)`` — a cron trigger, evaluated in UTC."""
    return Trigger("cron", MappingProxyType(dict(kw)))


@dataclass(frozen=True)
class JobSpec:
    """One scheduled job: fixed ``id``, its trigger, the function path and APScheduler's safety knobs."""

    id: str
    trigger: Trigger
    func: str
    description: str = ""
    max_instances: int = 1  # never two runs of one job at once in the leader
    coalesce: bool = True  # after a pause, run once, not once per missed tick
    misfire_grace_time: int = 60  # seconds a late run is still worth starting


JOBS: tuple[JobSpec, ...] = (
    JobSpec("audit_sequence", every(seconds=5), "mh_platform.services.audit:sequence_job",
            "chain pending audit entries (gapless seq, chain MAC, anchor); quarantine any whose entry MAC fails"),
    JobSpec("escalation_sweep", every(minutes=1), "mh_platform.jobs.tasks:escalation_sweep",
            "move overdue flags up a tier; oversight notices; cluster alerts"),
    JobSpec("notify_send_pending", every(seconds=20), "mh_platform.jobs.tasks:notify_send_pending",
            "deliver pending outbox messages (inbox, email, WeCom) with retries"),
    JobSpec("campaign_windows", every(minutes=1), "mh_platform.jobs.campaign_jobs:campaign_windows",
            "open screening campaigns whose window began, close those whose window ended"),
    JobSpec("campaign_reminders", cron(hour=0, minute=30), "mh_platform.jobs.campaign_jobs:campaign_reminders",
            "daily 08:30 Beijing: head teachers get a count of consented students still to finish"),
    JobSpec("referral_sweep", every(minutes=1), "mh_platform.services.referrals:sweep_job",
            "escalate green-channel referrals whose deadline passed (school → county → city), once each"),
    JobSpec("rate_limit_purge", every(minutes=10), "mh_platform.services.rate_limits:purge_expired",
            "delete rate-limit counters whose window has ended (database:// limiter storage)"),
    JobSpec("model_retrain", cron(day_of_week="sun", hour=18), "mh_platform.jobs.tasks:model_retrain",
            "weekly: write a candidate risk model beside the active one (off unless MHP_RISK_RETRAIN_ENABLED=1; "
            "never swapped in until a person approves it with `mhp model approve`)"),
)


def job_by_id(job_id: str) -> JobSpec:
    for j in JOBS:
        if j.id == job_id:
            return j
    raise KeyError(job_id)


def check_registry(jobs: tuple[JobSpec, ...] = JOBS) -> None:
    """Ids are unique and each function path is well formed (run by tests and at scheduler start)."""
    seen: set[str] = set()
    for j in jobs:
        if j.id in seen:
            raise ValueError(f"duplicate job id {j.id!r}")
        seen.add(j.id)
        if ":" not in j.func:
            raise ValueError(f"job {j.id!r}: func must be 'module:function', got {j.func!r}")
        if j.trigger.kind not in ("interval", "cron"):
            raise ValueError(f"job {j.id!r}: unknown trigger {j.trigger.kind!r}")
