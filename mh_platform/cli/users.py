"""`mhp users create | disable | enable | list | missing-roles`."""

from __future__ import annotations

import uuid

import click
import sqlalchemy as sa

from mh_platform.cli._common import CLI_ACTOR, echo_json, make_ctx


def _unit_id(ctx, code: str | None) -> uuid.UUID | None:
    from mh_platform.db.models import OrgUnit

    if not code:
        return None
    with ctx.uow() as uow:
        uid = uow.session.scalar(sa.select(OrgUnit.id).where(OrgUnit.code == code))
    if uid is None:
        raise click.ClickException(f"no org unit with code {code!r}")
    return uid


def _institution_id(ctx, code: str | None) -> uuid.UUID | None:
    from mh_platform.db.models import Institution

    if not code:
        return None
    with ctx.uow() as uow:
        iid = uow.session.scalar(sa.select(Institution.id).where(Institution.code == code))
    if iid is None:
        raise click.ClickException(f"no institution with code {code!r}")
    return iid


@click.group("users")
def cli() -> None:
    """Accounts."""


@cli.command()
@click.option("--username", required=True)
@click.option("--role", required=True, help="class_monitor, head_teacher, counsellor, school_leader, "
              "county_officer, city_officer, clinician or sysadmin")
@click.option("--unit", "unit_code", help="org unit code (all roles but clinician and sysadmin)")
@click.option("--institution", "institution_code", help="institution code (clinicians)")
@click.option("--display-name", default="")
@click.option("--email")
@click.password_option(envvar="MHP_NEW_PASSWORD")
def create(username, role, unit_code, institution_code, display_name, email, password) -> None:
    """Create an account with one role at one unit (or institution)."""
    from mh_platform.services import auth

    ctx = make_ctx()
    uid = auth.create_user(ctx, CLI_ACTOR, username=username, password=password, role=role,
                           unit_id=_unit_id(ctx, unit_code), institution_id=_institution_id(ctx, institution_code),
                           display_name=display_name, email=email)
    echo_json({"id": str(uid), "username": username.strip().lower(), "role": role})


@cli.command()
@click.argument("username")
def disable(username: str) -> None:
    """Disable an account: every session and token of it stops working at once."""
    _set_active(username, False)


@cli.command()
@click.argument("username")
def enable(username: str) -> None:
    _set_active(username, True)


def _set_active(username: str, active: bool) -> None:
    from mh_platform.db.models import User
    from mh_platform.services import auth

    ctx = make_ctx()
    with ctx.uow() as uow:
        uid = uow.session.scalar(sa.select(User.id).where(User.username == username.lower()))
    if uid is None:
        raise click.ClickException(f"no user {username!r}")
    auth.set_active(ctx, CLI_ACTOR, uid, active)
    click.echo(f"{username}: {'enabled' if active else 'disabled'}")


@cli.command("missing-roles")
@click.option("--json", "as_json", is_flag=True, help="one JSON array instead of lines")
def missing_roles(as_json: bool) -> None:
    """Units with nobody active in the role the escalation network needs there (a class without a head
    teacher, a school without a counsellor, a county or city without an officer): flags there are
    handed up to the next tier until someone is appointed. Ids, codes and unit names only."""
    from mh_platform.services import coverage

    rows = coverage.units_missing_roles(make_ctx(), CLI_ACTOR)
    if as_json:
        echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['kind']}\t{r['code']}\t{r['unit']}\tmissing {r['missing_role']}\t{r['unit_id']}")
    click.echo(f"{len(rows)} unit(s) missing a role", err=True)
