"""Programmatic Alembic: the CLI and the tests build every schema through the migrations."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from mh_platform.config import REPO_ROOT
from mh_platform.db.engine import normalise_url


def alembic_config(url: str) -> Config:
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.attributes["url"] = normalise_url(url)
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def check(url: str) -> None:
    """Raise if the models and the migrated schema differ (autogenerate finds something)."""
    command.check(alembic_config(url))
