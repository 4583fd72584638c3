"""The "waiting for you" panels of each role's home page — a registry other areas add to.

An area registers a panel once, at import of its blueprint module:

    from mh_platform.web.home import HomePanel, PanelData, register_panel
    from flask_babel import lazy_gettext as _l

    def _open_flags(ctx, actor) -> PanelData:
        n = flags_service.count_waiting(ctx, actor)          # a service call; no queries here
        return PanelData(count=n, link=url_for("flags.queue"))

    register_panel(HomePanel(key="flags.waiting", title=_l("待处理预警"),
                             roles={Role.COUNSELLOR, Role.HEAD_TEACHER}, loader=_open_flags, order=10))

The loader gets the ServiceContext and the Actor and returns ``PanelData`` (a count, a link and
optionally a few short lines — never names or clinical detail unless the role may see them; the
service decides). One failing panel does not break the page: it is shown as unavailable and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from mh_platform.core.types import Role
from mh_platform.services.context import Actor, ServiceContext

log = logging.getLogger("mh_platform.web.home")


@dataclass(frozen=True)
class PanelLine:
    text: str
    link: str | None = None
    level: str | None = None  # red / orange / yellow, for a coloured marker


@dataclass(frozen=True)
class PanelData:
    count: int | None = None
    link: str | None = None
    lines: list[PanelLine] = field(default_factory=list)
    note: str = ""


@dataclass(frozen=True)
class HomePanel:
    key: str
    title: Any  # a (lazy) translated string
    roles: frozenset[Role] | set[Role]
    loader: Callable[[ServiceContext, Actor], PanelData]
    order: int = 100
    urgent: bool = False  # shown first with a strong border when count > 0


HOME_PANELS: dict[str, HomePanel] = {}


def register_panel(panel: HomePanel) -> None:
    """Add (or replace, by key) a panel. Safe to call again on re-import."""
    HOME_PANELS[panel.key] = panel


@dataclass(frozen=True)
class RenderedPanel:
    key: str
    title: str
    data: PanelData | None
    urgent: bool
    failed: bool


def panels_for(ctx: ServiceContext, actor: Actor, panels: Iterable[HomePanel] | None = None,
               propagate: bool = False) -> list[RenderedPanel]:
    out: list[RenderedPanel] = []
    chosen = sorted((p for p in (panels if panels is not None else HOME_PANELS.values()) if actor.role in p.roles),
                    key=lambda p: (p.order, p.key))
    for p in chosen:
        try:
            data = p.loader(ctx, actor)
            out.append(RenderedPanel(p.key, str(p.title), data, p.urgent and bool(data.count), False))
        except Exception:
            if propagate:
                raise
            log.exception("home panel %s failed", p.key)
            out.append(RenderedPanel(p.key, str(p.title), None, False, True))
    return out
