"""The `mhp` command line.

One click group; each area lives in its own module ``mh_platform/cli/<area>.py`` that defines a
click group or command named ``cli`` and is listed in ``AREAS``. Errors are one clear line on
stderr and a non-zero exit, never a traceback (see ``_run``).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import click

from mh_platform.core.errors import DomainError

# area module name -> command name under `mhp`
AREAS: dict[str, str] = {
    "db": "db",
    "serve": "serve",
    "demo": "demo",
    "users": "users",
    "audit": "audit",
    "instruments": "instruments",
    "escalation": "escalation",
    "keys": "keys",
    "backup": "backup",
    "scheduler": "scheduler",
    "model": "model",
    "campaigns": "campaigns",
    "notify": "notify",
    "referrals": "referrals",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for mod, name in AREAS.items() if _has_module(mod))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for mod, name in AREAS.items():
            if name == cmd_name and _has_module(mod):
                return importlib.import_module(f"mh_platform.cli.{mod}").cli
        return None


def _has_module(mod: str) -> bool:
    return importlib.util.find_spec(f"mh_platform.cli.{mod}") is not None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """mh-platform — 学生心理健康四级预警平台."""


def fail(message: str, code: int = 2) -> None:
    """Print one clear error line and exit non-zero."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="mhp", standalone_mode=False)
    except click.exceptions.Abort:
        fail("aborted", 1)
    except click.ClickException as exc:
        fail(exc.format_message(), exc.exit_code or 2)
    except DomainError as exc:
        fail(str(exc), 2)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except Exception as exc:  # noqa: BLE001 - last line of defence: no traceback for users
        fail(f"{type(exc).__name__}: {exc}", 1)
