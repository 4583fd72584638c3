"""Who is asking, and may they: the web layer's authentication and authorisation helpers.

Default deny. Every endpoint needs a signed-in user (pages: cookie session; ``/api/v1``: bearer token)
unless it is marked ``@public`` (or its blueprint is listed in ``PUBLIC_BLUEPRINTS``). The app's
``before_request`` enforces this, so a view that forgets a decorator is still protected.

In a view:

    from mh_platform.core.authz import Permission
    from mh_platform.web.authz import requires, current_actor, service_ctx

    @bp.get("/flags")
    @requires(Permission.FLAG_READ)          # 403 if the role lacks the permission
    def flags():
        items = flags_service.queue(service_ctx(), current_actor())   # scope is the service's job
        ...

``g.actor`` is a ``services.context.Actor`` (role, unit, unit path, institution). Scope (which
objects) is decided by the services and their access functions, which answer 404 for out of scope.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, redirect, request, url_for
from flask_login import UserMixin

from mh_platform.core.errors import Forbidden
from mh_platform.services.context import Actor, ServiceContext

F = TypeVar("F", bound=Callable[..., Any])

# Blueprints whose every endpoint is reachable without signing in (e.g. the student answer flow,
# which has its own one-time access codes). Add the blueprint *name*.
PUBLIC_BLUEPRINTS: set[str] = {"static"}


class Unauthenticated(Exception):
    """No valid session (pages → login redirect) or bearer token (API → 401)."""


class WebUser(UserMixin):
    """What Flask-Login keeps: the actor and the rotating session token (the cookie's id)."""

    def __init__(self, actor: Actor, session_token: str) -> None:
        self.actor = actor
        self.session_token = session_token

    def get_id(self) -> str:  # the value stored in the session cookie
        return self.session_token


def service_ctx() -> ServiceContext:
    """The app's ServiceContext (database, clock, keys, settings)."""
    return current_app.extensions["mhp"]


def current_actor() -> Actor:
    """The signed-in actor; raises Unauthenticated if there is none."""
    actor = g.get("actor")
    if actor is None:
        raise Unauthenticated()
    return actor


def public(view: F) -> F:
    """Mark a view reachable without signing in."""
    view._mhp_public = True  # type: ignore[attr-defined]
    return view


def is_public_endpoint(endpoint: str | None) -> bool:
    if endpoint is None:
        return True  # unknown URL: let routing answer 404/405
    if endpoint.split(".", 1)[0] in PUBLIC_BLUEPRINTS or endpoint == "static":
        return True
    view = current_app.view_functions.get(endpoint)
    return bool(getattr(view, "_mhp_public", False))


def login_required_page(view: F) -> F:
    """A page that needs a signed-in user (redundant with the default, but says so at the view)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("actor") is None:
            return redirect(url_for("auth.login", next=_safe_next(request.full_path)))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def api_auth(view: F) -> F:
    """An /api/v1 view that needs a bearer token (the default for /api/v1; this makes it explicit)."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("actor") is None:
            raise Unauthenticated()
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def has_permission(actor: Actor | None, perm: Any) -> bool:
    """The role → permission matrix (``mh_platform.core.authz``) for this actor."""
    if actor is None or actor.role is None:
        return False
    from mh_platform.core import authz as core_authz

    return bool(core_authz.can(actor.role, perm))


def requires(*perms: Any) -> Callable[[F], F]:
    """The actor's role must hold every permission listed (else 403; 401/login if signed out)."""

    def deco(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            actor = g.get("actor")
            if actor is None:
                if request.path.startswith("/api/"):
                    raise Unauthenticated()
                return redirect(url_for("auth.login", next=_safe_next(request.full_path)))
            for p in perms:
                if not has_permission(actor, p):
                    raise Forbidden("your role may not do this")
            return view(*args, **kwargs)

        wrapper._mhp_permissions = perms  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return deco


def _safe_next(target: str | None) -> str | None:
    """Only local paths are followed after login (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    target = target.rstrip("?")
    return target or None


safe_next = _safe_next
