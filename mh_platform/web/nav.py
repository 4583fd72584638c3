"""The top bar's links per role: each area registers its pages with the same check its view makes.

A link is shown only when its page answers 200 for the signed-in actor (``tests`` check every role):

    register_nav(NavLink(key="flags", label=_l("预警工作台"), endpoint="flags.queue",
                         visible=lambda actor: may_see_flags(actor), order=20))

``nav_links()`` (a Jinja global) returns ``[(key, label, url)]`` for ``g.actor`` in ``order``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import g, url_for

from mh_platform.services.context import Actor


@dataclass(frozen=True)
class NavLink:
    key: str
    label: Any  # a lazy string
    endpoint: str
    visible: Callable[[Actor], bool]
    order: int = 100


_LINKS: dict[str, NavLink] = {}


def register_nav(link: NavLink) -> None:
    """Add (or replace, by key) one top-bar link."""
    _LINKS[link.key] = link


def nav_for(actor: Actor | None) -> list[NavLink]:
    """The links ``actor`` may follow, in order (none when signed out)."""
    if actor is None or actor.role is None:
        return []
    return [lk for lk in sorted(_LINKS.values(), key=lambda lk: (lk.order, lk.key)) if lk.visible(actor)]


def nav_links() -> list[tuple[str, str, str]]:
    """``[(key, label, url)]`` for the signed-in actor of this request."""
    return [(lk.key, str(lk.label), url_for(lk.endpoint)) for lk in nav_for(g.get("actor"))]
