"""Every GET route, for every role and for nobody (T1, T22): no server error anywhere, and a route that
names an object answers a missing one like an out-of-scope one (404, or the login / code page), never
with a page. Object ids are fresh UUIDs, so nothing they name exists."""

from __future__ import annotations

import uuid

from web_helpers import login

from mh_platform.core.types import Role

# GET routes that take a value which is not an object id, and what answers it on its own
NOT_AN_ID = {"main.set_lang", "student.set_lang"}


def _get_routes(app) -> list:
    """The GET routes; those that start a fresh session (the login page, the student area, which
    empties the session for the next student at the same computer) last."""
    routes = [r for r in app.url_map.iter_rules()
              if "GET" in r.methods and r.endpoint != "static" and r.endpoint not in NOT_AN_ID]
    return sorted(routes, key=lambda r: r.rule.startswith(("/login", "/s/")))


def _url(rule) -> str:
    """Every id a fresh UUID; an ``<any(a, b):name>`` argument (a fixed set of words) its first word."""
    def value(arg: str) -> str:
        items = getattr(rule._converters.get(arg), "items", None)  # werkzeug's AnyConverter
        return sorted(items)[0] if items else str(uuid.uuid4())

    return rule.build({arg: value(arg) for arg in rule.arguments}, append_unknown=False)[1]


def test_every_get_route_for_every_role_answers_without_a_server_error(app, city):
    routes = _get_routes(app)
    assert len(routes) > 40  # the sweep reaches the whole app, not a corner of it
    seen: dict[str, set[int]] = {}
    for who in (None, *Role):
        client = app.test_client()
        if who is not None:
            r = login(client, city.users[who])
            assert r.status_code == 302, (who, r.status_code)
        for rule in routes:
            r = client.get(_url(rule))
            assert r.status_code < 500, (who, rule.rule, r.status_code)
            if rule.arguments:  # names an object that does not exist
                assert r.status_code in (302, 303, 401, 403, 404), (who, rule.rule, r.status_code)
            seen.setdefault(rule.rule, set()).add(r.status_code)
    # the sweep exercised pages, not only refusals
    assert sum(200 in codes for codes in seen.values()) >= 15


def test_every_post_route_naming_a_missing_object_refuses_without_a_server_error(ctx, city):
    """The same for the routes that change something, with an empty form (CSRF off here: its own tests
    cover it): a missing object is refused — never written, never a server error."""
    from mh_platform.web.app import create_app

    app = create_app(ctx=ctx, extra_config={"TESTING": True, "MHP_PROPAGATE_ERRORS": True, "WTF_CSRF_ENABLED": False})
    routes = [r for r in app.url_map.iter_rules() if "POST" in r.methods and r.arguments and r.endpoint != "static"]
    assert len(routes) > 15
    for who in (None, *Role):
        client = app.test_client()
        if who is not None:
            assert login(client, city.users[who]).status_code == 302
        before = _events(ctx)
        for rule in routes:
            r = client.post(_url(rule), data={})
            assert r.status_code in (302, 303, 400, 401, 403, 404, 422), (who, rule.rule, r.status_code)
        assert _events(ctx) == before, who  # nothing was done: not one audit event


def _events(ctx) -> int:
    import sqlalchemy as sa

    from mh_platform.db.models import EventLog

    with ctx.uow() as uow:
        return uow.session.scalar(sa.select(sa.func.count()).select_from(EventLog))
