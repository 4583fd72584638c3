"""Run the jobs in ``registry.JOBS`` — only while this process is the leader.

``SchedulerRunner.run()`` loops: try to become leader (``leader.LeaderLock``); as leader, build an
APScheduler ``BackgroundScheduler`` from ``JOBS`` (fixed ids, ``replace_existing``, one instance per
job, coalesced, misfire grace) and heartbeat the lock; if the lock is lost, shut the scheduler down
and go back to following. ``stop()`` (SIGTERM/SIGINT in ``mhp scheduler run``) lets running jobs
finish and releases the lock, so a follower takes over at once. A killed leader (SIGKILL) loses the
lock with its process or connection; every job step is idempotent, so the new leader simply runs
the next tick and finishes what was left.

Run it in its own process (``mhp scheduler run``), never inside web workers — except the single
process demo (``mhp serve --with-scheduler``) which uses ``start_in_thread``.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mh_platform.jobs.leader import LeaderLock
from mh_platform.jobs.registry import JOBS, JobSpec, Trigger, check_registry

log = logging.getLogger("mh_platform.scheduler")


def load_func(path: str) -> Callable[..., Any]:
    """``"package.module:function"`` → the function."""
    mod, _, name = path.partition(":")
    return getattr(importlib.import_module(mod), name)


def run_job(ctx: Any, spec: JobSpec) -> dict[str, Any]:
    """Run one job now, logging one JSON line; exceptions are logged, never propagate into APScheduler."""
    started = time.monotonic()
    try:
        result = load_func(spec.func)(ctx)
        ok = True
    except Exception as exc:  # noqa: BLE001 - a failing job must not kill the scheduler
        log.exception("job %s failed", spec.id)
        result, ok = {"error": type(exc).__name__}, False
    summary = _summarise(result)
    log.info(json.dumps({"job": spec.id, "ok": ok, "ms": round((time.monotonic() - started) * 1000),
                         "result": summary}, default=str))
    return {"job": spec.id, "ok": ok, "result": result}


def _summarise(result: Any) -> Any:
    if isinstance(result, dict):
        return {k: (len(v) if isinstance(v, list | tuple) else v) for k, v in result.items()}
    return result


def _apscheduler_trigger(trigger: Trigger, tick: float | None) -> Any:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if trigger.kind == "interval":
        if tick is not None:
            return IntervalTrigger(seconds=tick, timezone=UTC)
        return IntervalTrigger(timezone=UTC, **dict(trigger.args))
    if tick is not None:
        return IntervalTrigger(seconds=tick, timezone=UTC)
    return CronTrigger(timezone=UTC, **dict(trigger.args))


def build_scheduler(ctx: Any, jobs: Iterable[JobSpec] = JOBS, *, tick: float | None = None,
                    start_now: bool = True) -> Any:
    """A BackgroundScheduler with every job of ``jobs`` (not started). ``tick`` replaces every
    trigger by a fixed interval in seconds (drills and tests)."""
    from apscheduler.executors.pool import ThreadPoolExecutor
    from apscheduler.schedulers.background import BackgroundScheduler

    jobs = tuple(jobs)
    check_registry(jobs)
    sched = BackgroundScheduler(timezone=UTC, executors={"default": ThreadPoolExecutor(max_workers=4)})
    now = datetime.now(UTC)
    for spec in jobs:
        kw: dict[str, Any] = {}
        if start_now and spec.trigger.kind == "interval":
            kw["next_run_time"] = now  # a new leader catches up at once
        sched.add_job(run_job, trigger=_apscheduler_trigger(spec.trigger, tick), args=(ctx, spec), id=spec.id,
                      name=spec.description or spec.id, replace_existing=True, max_instances=spec.max_instances,
                      coalesce=spec.coalesce, misfire_grace_time=spec.misfire_grace_time, **kw)
    return sched


def select_jobs(only: Iterable[str] | None = None, jobs: Iterable[JobSpec] = JOBS) -> tuple[JobSpec, ...]:
    jobs = tuple(jobs)
    if not only:
        return jobs
    wanted = list(only)
    known = {j.id for j in jobs}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise ValueError(f"unknown job id(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return tuple(j for j in jobs if j.id in wanted)


def note_lease(ctx: Any, name: str, holder: str, ttl: timedelta) -> None:
    """Record who leads in ``scheduler_lease`` (for ``mhp scheduler status``; the lock itself decides)."""
    from mh_platform.db.models import SchedulerLease

    now = datetime.now(UTC)
    try:
        with ctx.uow() as uow:
            s = uow.session
            row = s.get(SchedulerLease, name)
            if row is None:
                s.add(SchedulerLease(name=name, holder=holder, expires_at=now + ttl))
            else:
                row.holder, row.expires_at = holder, now + ttl
            uow.commit()
    except sa.exc.SQLAlchemyError as exc:
        log.warning("could not note the scheduler lease: %s", exc)


class SchedulerRunner:
    """Leader election + APScheduler for one process."""

    def __init__(self, ctx: Any, *, jobs: Iterable[JobSpec] = JOBS, tick: float | None = None,
                 retry_seconds: float = 5.0, heartbeat_seconds: float = 5.0, lock_name: str = "mhp-scheduler") -> None:
        self.ctx = ctx
        self.jobs = tuple(jobs)
        check_registry(self.jobs)
        self.tick = tick
        self.retry_seconds = retry_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.lock = LeaderLock(ctx.settings.database_url, lock_name)
        self._stop = threading.Event()
        self.is_leader = threading.Event()

    def stop(self, *_: Any) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait_for_leadership(self, timeout: float | None = None) -> bool:
        """Block until leader (True), stopped or ``timeout`` seconds passed (False)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            if self.lock.try_acquire():
                log.info(json.dumps({"scheduler": "leader", "holder": self.lock.holder}))
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            self._stop.wait(self.retry_seconds if deadline is None
                            else max(0.0, min(self.retry_seconds, deadline - time.monotonic())))
        return False

    def run_once(self, wait_seconds: float = 0.0) -> list[dict[str, Any]]:
        """Become leader (waiting up to ``wait_seconds``), run every job once in order, release."""
        if not self.wait_for_leadership(wait_seconds):
            raise RuntimeError("another scheduler process is the leader; try again later")
        try:
            return [run_job(self.ctx, spec) for spec in self.jobs]
        finally:
            self.lock.release()

    def run(self) -> None:
        """Follow or lead until ``stop()``."""
        log.info(json.dumps({"scheduler": "start", "holder": self.lock.holder, "jobs": [j.id for j in self.jobs]}))
        while not self._stop.is_set():
            if not self.wait_for_leadership():
                break
            self.is_leader.set()
            sched = build_scheduler(self.ctx, self.jobs, tick=self.tick)
            sched.start()
            ttl = timedelta(seconds=self.heartbeat_seconds * 3)
            note_lease(self.ctx, self.lock.name, self.lock.holder, ttl)
            try:
                while not self._stop.wait(self.heartbeat_seconds):
                    if not self.lock.still_held():
                        log.error(json.dumps({"scheduler": "lock lost", "holder": self.lock.holder}))
                        break
                    note_lease(self.ctx, self.lock.name, self.lock.holder, ttl)
            finally:
                self.is_leader.clear()
                sched.shutdown(wait=True)  # running jobs finish their current transaction
                self.lock.release()
        log.info(json.dumps({"scheduler": "stopped", "holder": self.lock.holder}))


def start_in_thread(ctx: Any, **kw: Any) -> SchedulerRunner:
    """Single-process demo mode: the leader loop in a daemon thread. Call ``.stop()`` at exit."""
    runner = SchedulerRunner(ctx, **kw)
    threading.Thread(target=runner.run, name="mhp-scheduler", daemon=True).start()
    return runner
