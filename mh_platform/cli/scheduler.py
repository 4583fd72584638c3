"""``mhp scheduler``: run the job scheduler (one leader across processes), list jobs, show the leader."""

from __future__ import annotations

import logging
import signal
import sys

import click

from mh_platform.cli._common import echo_json, make_ctx


@click.group("scheduler")
def cli() -> None:
    """定时任务 / the job scheduler (APScheduler, one leader by database lock)."""


@cli.command("run")
@click.option("--once", is_flag=True, help="Run every job once (as leader) and exit.")
@click.option("--only", "only", multiple=True, help="Run only these job ids (repeatable).")
@click.option("--tick", type=float, default=None,
              help="Replace every trigger by this interval in seconds (drills and tests).")
@click.option("--wait", "wait_seconds", type=float, default=0.0, show_default=True,
              help="With --once: seconds to wait for leadership before giving up.")
@click.option("--retry", "retry_seconds", type=float, default=5.0, show_default=True,
              help="Seconds between attempts to become leader.")
@click.option("--heartbeat", "heartbeat_seconds", type=float, default=5.0, show_default=True,
              help="Seconds between lock checks while leading.")
def run_cmd(once: bool, only: tuple[str, ...], tick: float | None, wait_seconds: float,
            retry_seconds: float, heartbeat_seconds: float) -> None:
    """Lead or follow until SIGTERM/SIGINT; jobs run only in the leader."""
    from mh_platform.jobs.scheduler import SchedulerRunner, select_jobs

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        jobs = select_jobs(only)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    if tick is not None and tick <= 0:
        raise click.ClickException("--tick must be positive seconds")
    ctx = make_ctx()
    runner = SchedulerRunner(ctx, jobs=jobs, tick=tick, retry_seconds=retry_seconds,
                             heartbeat_seconds=heartbeat_seconds)
    signal.signal(signal.SIGTERM, runner.stop)
    signal.signal(signal.SIGINT, runner.stop)
    if once:
        try:
            results = runner.run_once(wait_seconds)
        except RuntimeError as exc:
            raise click.ClickException(str(exc)) from None
        echo_json({"ran": [{"job": r["job"], "ok": r["ok"]} for r in results]})
        if not all(r["ok"] for r in results):
            sys.exit(1)
        return
    runner.run()


@cli.command("jobs")
def jobs_cmd() -> None:
    """List the registered jobs (id, trigger, function)."""
    from mh_platform.jobs.registry import JOBS

    echo_json([{"id": j.id, "trigger": j.trigger.kind, "args": dict(j.trigger.args), "func": j.func,
                "max_instances": j.max_instances, "coalesce": j.coalesce,
                "misfire_grace_time": j.misfire_grace_time} for j in JOBS])


@cli.command("status")
def status_cmd() -> None:
    """Who leads now (from the lease row the leader refreshes)."""
    import sqlalchemy as sa

    from mh_platform.db.models import SchedulerLease

    ctx = make_ctx(bootstrap=False)
    with ctx.uow() as uow:
        rows = uow.session.scalars(sa.select(SchedulerLease)).all()
        now = ctx.now()
        echo_json([{"name": r.name, "holder": r.holder, "expires_at": r.expires_at.isoformat(),
                    "live": r.expires_at > now} for r in rows])
