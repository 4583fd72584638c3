"""Regression tests for the defects T14's schemathesis run found in ``/api/v1`` (one test each).

See ``tests/web/test_api_schemathesis.py`` and docs/security_tests.md (T14).
"""

from __future__ import annotations

import pytest
from web_helpers import api_token, bearer, login

from mh_platform.core.errors import ValidationFailed
from mh_platform.core.types import Role
from mh_platform.services import flags, students_read
from mh_platform.services.context import SYSTEM
from mh_platform.web.openapi import build_spec

HUGE = 2**70  # past 64 bits: SQLite raised OverflowError, PostgreSQL "bigint out of range" — both a 500


def _actor(ctx, city, role):
    from mh_platform.services import auth

    with ctx.uow() as uow:
        from mh_platform.db.models import User

        return auth.actor_for_user(uow.session, uow.session.get(User, city.user_ids[role]))


def test_a_page_number_past_64_bits_is_refused_not_a_server_error(ctx, city, client):
    """schemathesis: ``GET /api/v1/students?page=662843800598912871164102318932099072`` answered 500."""
    h = bearer(api_token(client, city.users[Role.COUNSELLOR]))
    for page in (HUGE, students_read.MAX_PAGE + 1):
        r = client.get(f"/api/v1/students?page={page}", headers=h)
        assert r.status_code == 422, (page, r.status_code)
        assert r.get_json()["error"] == "validation_failed"
    r = client.get(f"/api/v1/students?page={students_read.MAX_PAGE}", headers=h)
    assert r.status_code == 200 and r.get_json()["items"] == []
    with pytest.raises(ValidationFailed):
        students_read.list_students(ctx, _actor(ctx, city, Role.COUNSELLOR), page=HUGE)


def test_the_roster_page_clamps_a_huge_page_number(ctx, city, client):
    """The HTML roster reads the same service: a huge ``?page=`` is clamped, not a 500."""
    login(client, city.users[Role.COUNSELLOR])
    assert client.get(f"/roster?page={HUGE}").status_code == 200


def test_a_flag_list_offset_past_64_bits_is_refused_not_a_server_error(ctx, city, client):
    """schemathesis: ``GET /api/v1/flags?offset=29456636830721154659094002946539520`` answered 500."""
    h = bearer(api_token(client, city.users[Role.COUNSELLOR]))
    for offset in (HUGE, flags.MAX_LIST_OFFSET + 1):
        r = client.get(f"/api/v1/flags?offset={offset}", headers=h)
        assert r.status_code == 422, (offset, r.status_code)
    assert client.get(f"/api/v1/flags?offset={flags.MAX_LIST_OFFSET}", headers=h).status_code == 200
    with pytest.raises(ValidationFailed):
        flags.list_flags(ctx, _actor(ctx, city, Role.COUNSELLOR), offset=HUGE)
    with pytest.raises(ValidationFailed):
        flags.list_flags(ctx, SYSTEM, offset=-1)


def test_the_document_states_the_bounds_of_page_and_offset(app):
    spec = build_spec(app)

    def query(path: str, name: str) -> dict:
        params = spec["paths"][path]["get"]["parameters"]
        return next(p for p in params if p["name"] == name)["schema"]

    assert query("/api/v1/students", "page")["maximum"] == students_read.MAX_PAGE
    assert query("/api/v1/students", "per_page")["maximum"] == students_read.MAX_PER_PAGE
    assert query("/api/v1/flags", "offset")["maximum"] == flags.MAX_LIST_OFFSET


def test_the_document_names_the_referral_actions(app, city, client):
    """``POST /api/v1/referrals/{referral_id}/{action}`` documented ``action`` as any string, so a client
    (and schemathesis: 159 of 166 calls) could only learn the actions from the summary's prose."""
    from mh_platform.web.schemas.cases import REFERRAL_ACTIONS

    op = build_spec(app)["paths"]["/api/v1/referrals/{referral_id}/{action}"]["post"]
    action = next(p for p in op["parameters"] if p["name"] == "action")
    assert action["schema"] == {"type": "string", "enum": list(REFERRAL_ACTIONS)}
    h = bearer(api_token(client, city.users[Role.COUNSELLOR]))
    rid = "00000000-0000-0000-0000-000000000001"
    assert client.post(f"/api/v1/referrals/{rid}/no_such_action", json={}, headers=h).status_code == 404
    assert client.post(f"/api/v1/referrals/{rid}/accept", json={}, headers=h).status_code == 404
