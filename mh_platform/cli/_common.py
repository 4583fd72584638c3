"""Shared CLI plumbing: build the service context once per command, JSON output."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from mh_platform.config import ConfigError, load_settings
from mh_platform.services.context import SYSTEM, Actor, ServiceContext, build_context

CLI_ACTOR = Actor(user_id=None, role=None, username="cli", purpose="administration")


def make_ctx(bootstrap: bool = True) -> ServiceContext:
    """Settings → context; refuses to start on bad configuration or a bad master key."""
    from mh_platform.crypto.keyring import KeyringError
    from mh_platform.services.keys import bootstrap_keys

    try:
        ctx = build_context(load_settings())
    except ConfigError as exc:
        raise click.ClickException(f"configuration: {exc}") from None
    except KeyringError as exc:
        raise click.ClickException(f"master key: {exc}") from None
    if bootstrap:
        try:
            bootstrap_keys(ctx)
        except KeyringError as exc:
            raise click.ClickException(f"master key: {exc}") from None
    return ctx


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False, default=str))


__all__ = ["CLI_ACTOR", "SYSTEM", "echo_json", "make_ctx", "sys"]
