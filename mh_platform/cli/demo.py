"""`mhp demo seed | accounts`: the synthetic demo city."""

from __future__ import annotations

import click

from mh_platform.cli._common import echo_json, make_ctx


@click.group("demo")
def cli() -> None:
    """The synthetic demo city (no real people)."""


@cli.command()
@click.option("--password", default=None, help="password for every demo account (default: Demo-2026-pass)")
@click.option("--students", "n_students", default=4000, show_default=True, type=click.IntRange(40, 2_000_000))
@click.option("--seed", default=2026, show_default=True, type=int)
@click.option("--if-empty", is_flag=True, help="do nothing when the database already has data")
def seed(password: str | None, n_students: int, seed: int, if_empty: bool) -> None:
    """Seed the demo city into an empty database."""
    from mh_platform.services import demo
    from mh_platform.services.passwords import check_password_rules

    if password is not None:
        check_password_rules(password)
    ctx = make_ctx()
    if not demo.is_empty(ctx):
        if if_empty:
            click.echo("database already has data; demo seed skipped")
            return
        raise click.ClickException("the database is not empty; demo seed needs an empty database")
    summary = demo.seed(ctx, n_students=n_students, seed=seed, password=password or demo.DEFAULT_PASSWORD)
    echo_json(summary)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help='a JSON list of {"username","role","unit"}')
def accounts(as_json: bool) -> None:
    """List the accounts with their role and unit."""
    from mh_platform.services import demo

    rows = demo.list_accounts(make_ctx())
    if as_json:
        echo_json(rows)
        return
    click.echo(f"Demo accounts (password: {demo.DEFAULT_PASSWORD} unless seeded with --password):")
    for r in rows:
        click.echo(f"  {r['username']:<22} {r['role']:<15} {r['unit']}")
