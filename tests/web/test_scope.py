"""Role × unit: for each of the eight roles, GET /api/v1/students returns exactly its scope, with only
the fields the role may see, and every student outside it is a 404 — the same 404 as a missing id."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from web_helpers import api_token, bearer

from mh_platform.core.types import Role
from mh_platform.db.models import AccessLog

# The fields each role may see, written out here from the design (not imported from the service).
VISIBLE = {
    Role.CLASS_MONITOR: {"id", "name", "class_id", "class_name"},
    Role.HEAD_TEACHER: {"id", "name", "sex", "class_id", "class_name", "grade_level"},
    Role.COUNSELLOR: {"id", "name", "sex", "birth_year", "student_number", "pseudonym", "class_id", "class_name",
                      "grade_level", "school_id", "school_name"},
    Role.SCHOOL_LEADER: {"id", "pseudonym", "sex", "class_id", "class_name", "grade_level", "school_id",
                         "school_name"},
}
NOT_FOUND = {"error": "not_found", "message": "not found"}


def _all_pages(client, token: str, per_page: int) -> list[dict]:
    items, page = [], 1
    while True:
        r = client.get(f"/api/v1/students?page={page}&per_page={per_page}", headers=bearer(token))
        assert r.status_code == 200, r.get_json()
        body = r.get_json()
        items += body["items"]
        if page * per_page >= body["total"]:
            assert len(items) == body["total"]
            return items
        page += 1


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_each_role_sees_exactly_its_scope(client, city, role):
    token = api_token(client, city.users[role])
    expected = city.expected_scope(role)
    items = _all_pages(client, token, per_page=3)  # several pages: pagination must not lose or repeat anyone
    got = [uuid.UUID(i["id"]) for i in items]
    assert len(got) == len(set(got))
    assert set(got) == expected

    for item in items:
        assert set(item) == VISIBLE[role]
        if "name" in item:
            assert item["name"] == city.students[uuid.UUID(item["id"])][0]

    outside = set(city.students) - expected
    assert outside, "the fixture must leave students outside every scope"
    for sid in outside:
        r = client.get(f"/api/v1/students/{sid}", headers=bearer(token))
        assert r.status_code == 404
        assert r.get_json() == NOT_FOUND
    for sid in expected:
        r = client.get(f"/api/v1/students/{sid}", headers=bearer(token))
        assert r.status_code == 200
        assert set(r.get_json()) == VISIBLE[role]
    # missing and malformed ids look exactly like out-of-scope ones
    for bad in (uuid.uuid4(), "not-a-uuid", "1"):
        r = client.get(f"/api/v1/students/{bad}", headers=bearer(token))
        assert r.status_code == 404 and r.get_json() == NOT_FOUND


def test_monitor_gets_names_of_own_class_only(client, city):
    token = api_token(client, city.users[Role.CLASS_MONITOR])
    items = client.get("/api/v1/students?per_page=200", headers=bearer(token)).get_json()["items"]
    own = {n for n, c, _s, _k in city.students.values() if c.id == city.home_class.id}
    assert {i["name"] for i in items} == own
    assert {i["class_name"] for i in items} == {city.home_class.name}
    assert all("student_number" not in i and "sex" not in i and "pseudonym" not in i for i in items)


def test_names_are_opened_through_disclosure_and_logged(ctx, client, city):
    def log_count(field: str) -> int:
        with ctx.uow() as uow:
            return uow.session.scalar(sa.select(sa.func.count()).select_from(AccessLog)
                                      .where(AccessLog.field == field))

    token = api_token(client, city.users[Role.COUNSELLOR])
    before_names, before_numbers = log_count("name_enc"), log_count("student_number_enc")
    r = client.get("/api/v1/students?per_page=5", headers=bearer(token))
    assert r.status_code == 200
    assert log_count("name_enc") == before_names + 5
    assert log_count("student_number_enc") == before_numbers + 5
    # the school leader's pseudonymous list opens nothing
    token = api_token(client, city.users[Role.SCHOOL_LEADER])
    before = log_count("name_enc")
    assert client.get("/api/v1/students", headers=bearer(token)).status_code == 200
    assert log_count("name_enc") == before


def test_sysadmin_sees_no_students(client, city):
    token = api_token(client, city.users[Role.SYSADMIN])
    body = client.get("/api/v1/students", headers=bearer(token)).get_json()
    assert body == {"items": [], "page": 1, "per_page": 50, "total": 0}
    sid = next(iter(city.students))
    assert client.get(f"/api/v1/students/{sid}", headers=bearer(token)).status_code == 404


def test_head_teacher_assigned_above_a_class_reaches_no_one(ctx, client, city):
    from mh_platform.services import auth
    from mh_platform.services.context import SYSTEM

    auth.create_user(ctx, SYSTEM, username="t.ht.school", password="correct horse battery 1",
                     role=Role.HEAD_TEACHER, unit_id=city.home_school.id)
    token = api_token(client, "t.ht.school")
    assert client.get("/api/v1/students", headers=bearer(token)).get_json()["total"] == 0


def test_me_reports_role_and_units(client, city):
    token = api_token(client, city.users[Role.COUNSELLOR])
    me = client.get("/api/v1/me", headers=bearer(token)).get_json()
    assert me["role"] == "counsellor" and me["username"] == city.users[Role.COUNSELLOR]
    assert [u["id"] for u in me["units"]] == [str(city.home_school.id)]
    assert me["units"][0]["kind"] == "school"
    assert me["units"][0]["ancestors"] == ["盘锦市", "兴隆台区"]
    assert me["below"] == {"grade": 2, "class": 4}
    assert me["students"] == 8
    token = api_token(client, city.users[Role.CLINICIAN])
    me = client.get("/api/v1/me", headers=bearer(token)).get_json()
    assert me["units"] == [] and me["institution"]["name"] == "盘锦市精神卫生中心"


@pytest.mark.parametrize("query", ["page=0", "page=abc", "per_page=0", "per_page=1000"])
def test_bad_pagination_is_a_clear_422(client, city, query):
    token = api_token(client, city.users[Role.COUNSELLOR])
    r = client.get(f"/api/v1/students?{query}", headers=bearer(token))
    assert r.status_code == 422
    body = r.get_json()
    assert body["error"] == "validation_failed"
    assert body["errors"] and body["errors"][0]["field"] == query.split("=")[0]
