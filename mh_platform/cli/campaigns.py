"""`mhp campaigns …`: screening campaigns, their window jobs, roster and paper imports, completion.

Staff actions run as a named account (``--as USERNAME``) so the same role and scope rules apply as
on the pages; the window jobs run as the system, like the scheduler.
"""

from __future__ import annotations

import pathlib
import uuid
from datetime import datetime

import click
import sqlalchemy as sa

from mh_platform.cli._common import echo_json, make_ctx


def _actor(ctx, username: str):  # noqa: ANN001, ANN202
    from mh_platform.db.models import User
    from mh_platform.services.auth import actor_for_user

    with ctx.uow() as uow:
        u = uow.session.scalar(sa.select(User).where(User.username == username.strip().lower()))
        actor = actor_for_user(uow.session, u) if u is not None and u.is_active else None
    if actor is None:
        raise click.ClickException(f"no active account {username!r} with a role")
    return actor


def _when(value: str) -> datetime:
    try:
        d = datetime.fromisoformat(value)
    except ValueError:
        raise click.ClickException(f"not an ISO date-time: {value!r} (e.g. 2026-09-20T08:00+08:00)") from None
    if d.tzinfo is None:
        raise click.ClickException("give a timezone offset, e.g. 2026-09-20T08:00+08:00")
    return d


def _uuid(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise click.ClickException(f"not an id: {value!r}") from None


@click.group("campaigns")
def cli() -> None:
    """Screening campaigns (心理测评)."""


@cli.command("list")
@click.option("--as", "username", required=True, help="act as this account")
def list_(username: str) -> None:
    from mh_platform.services import campaigns

    ctx = make_ctx()
    for c in campaigns.list_campaigns(ctx, _actor(ctx, username)):
        echo_json({"id": c.id, "name": c.name, "status": c.status, "opens_at": c.opens_at.isoformat(),
                   "closes_at": c.closes_at.isoformat(), "grades": c.grades, "instruments": list(c.instruments)})


@cli.command("create")
@click.option("--as", "username", required=True)
@click.option("--name", required=True)
@click.option("--unit", "units", multiple=True, required=True, help="org unit code (school, county or city)")
@click.option("--grades", required=True, help="e.g. 7,8,9")
@click.option("--opens", required=True, help="ISO date-time with offset")
@click.option("--closes", required=True, help="ISO date-time with offset")
def create(username: str, name: str, units: tuple[str, ...], grades: str, opens: str, closes: str) -> None:
    from mh_platform.db.models import OrgUnit
    from mh_platform.services import campaigns

    ctx = make_ctx()
    actor = _actor(ctx, username)
    with ctx.uow() as uow:
        ids = [uow.session.scalar(sa.select(OrgUnit.id).where(OrgUnit.code == u)) for u in units]
    if None in ids:
        raise click.ClickException("unknown unit code")
    try:
        gs = [int(g) for g in grades.split(",") if g.strip()]
    except ValueError:
        raise click.ClickException("grades: numbers separated by commas") from None
    cid = campaigns.create(ctx, actor, name=name, unit_ids=ids, grades=gs, opens_at=_when(opens),
                           closes_at=_when(closes))
    echo_json({"campaign_id": cid})


@cli.command("run-jobs")
def run_jobs() -> None:
    """Close ended and open started windows, then send today's reminders (what the scheduler does)."""
    from mh_platform.jobs import campaign_jobs

    ctx = make_ctx()
    echo_json(campaign_jobs.campaign_windows(ctx) | campaign_jobs.send_reminders(ctx))


@cli.command("completion")
@click.argument("campaign_id")
@click.option("--as", "username", required=True)
@click.option("--unit", "unit_code", default=None)
def completion_(campaign_id: str, username: str, unit_code: str | None) -> None:
    from mh_platform.db.models import OrgUnit
    from mh_platform.services import completion

    ctx = make_ctx()
    unit_id = None
    if unit_code:
        with ctx.uow() as uow:
            unit_id = uow.session.scalar(sa.select(OrgUnit.id).where(OrgUnit.code == unit_code))
        if unit_id is None:
            raise click.ClickException("unknown unit code")
    rep = completion.completion(ctx, _actor(ctx, username), _uuid(campaign_id), unit_id)
    for r in [*rep.rows, rep.unit]:
        echo_json({"unit": r.name, "eligible": r.eligible, "consented": r.consented, "started": r.started,
                   "completed": r.completed, "readminister": r.readminister})


@cli.command("import-roster")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@click.option("--as", "username", required=True)
@click.option("--preview", is_flag=True, help="check only, write nothing")
def import_roster(path: pathlib.Path, username: str, preview: bool) -> None:
    from mh_platform.core.errors import ValidationFailed
    from mh_platform.services import roster

    ctx = make_ctx()
    actor = _actor(ctx, username)
    data = path.read_bytes()
    pv = roster.preview(ctx, actor, data, path.name)
    for e in pv.errors[:200]:
        echo_json(e.as_dict())
    if pv.errors or preview:
        echo_json(pv.summary())
        if pv.errors:
            raise click.ClickException(f"{len(pv.errors)} row(s) have errors; nothing was imported")
        return
    try:
        echo_json(roster.commit(ctx, actor, data, path.name).summary())
    except ValidationFailed as exc:
        raise click.ClickException(str(exc)) from None


@cli.command("import-paper")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=pathlib.Path))
@click.option("--campaign", "campaign_id", required=True)
@click.option("--as", "username", required=True)
@click.option("--preview", is_flag=True)
def import_paper(path: pathlib.Path, campaign_id: str, username: str, preview: bool) -> None:
    from mh_platform.services import paper_import

    ctx = make_ctx()
    actor = _actor(ctx, username)
    data = path.read_bytes()
    pv = paper_import.preview(ctx, actor, data, path.name, _uuid(campaign_id))
    for e in pv.errors[:200]:
        echo_json(e.as_dict())
    if pv.errors or preview:
        echo_json(pv.summary())
        if pv.errors:
            raise click.ClickException(f"{len(pv.errors)} row(s) have errors; nothing was imported")
        return
    echo_json(paper_import.commit(ctx, actor, data, path.name, _uuid(campaign_id)).summary())
