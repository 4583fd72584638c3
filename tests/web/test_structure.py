"""Structure rules of the web layer: views run no queries; every /api/v1 route is documented;
the OpenAPI document is well formed; identity fields agree with the role → permission matrix."""

from __future__ import annotations

import pathlib
import re

import pytest

from mh_platform.core.authz import Permission, can
from mh_platform.core.types import Role
from mh_platform.services.students_read import FIELDS_BY_ROLE, fields_for
from mh_platform.web.openapi import undocumented_api_rules

WEB = pathlib.Path(__file__).resolve().parents[2] / "mh_platform" / "web"
FORBIDDEN = [
    (re.compile(r"\bselect\("), "select("),
    (re.compile(r"^\s*(from|import)\s+sqlalchemy", re.M), "sqlalchemy import"),
    (re.compile(r"\bmh_platform\.db\b"), "mh_platform.db import"),
    (re.compile(r"\.uow\(\)"), "a unit of work"),
    (re.compile(r"\.sessions\b|uow\.session|\bSession\b"), "a database session"),
    (re.compile(r"\.(execute|scalars?|query)\("), "a query"),
]


def test_views_run_no_queries():
    offenders = []
    for path in sorted(WEB.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for rx, what in FORBIDDEN:
            for m in rx.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                offenders.append(f"{path.relative_to(WEB.parent.parent)}:{line}: {what}")
    assert not offenders, "mh_platform/web must call services, not the database:\n" + "\n".join(offenders)


def test_the_structure_check_catches_a_query(tmp_path):
    text = "import sqlalchemy as sa\nrows = session.execute(sa.select(X))\n"
    hits = {what for rx, what in FORBIDDEN if rx.search(text)}
    assert {"select(", "sqlalchemy import", "a query"} <= hits


def test_every_api_route_is_documented(app):
    assert undocumented_api_rules(app) == []


def test_openapi_document(client):
    r = client.get("/api/v1/openapi.json")
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["openapi"].startswith("3.")
    assert doc["components"]["securitySchemes"]["bearerAuth"] == {"type": "http", "scheme": "bearer"}
    paths = doc["paths"]
    assert {"/api/v1/auth/token", "/api/v1/auth/revoke", "/api/v1/me", "/api/v1/students",
            "/api/v1/students/{student_id}", "/api/v1/openapi.json"} <= set(paths)
    assert paths["/api/v1/auth/token"]["post"]["security"] == []
    assert paths["/api/v1/students"]["get"]["security"] == [{"bearerAuth": []}]
    params = {p["name"] for p in paths["/api/v1/students"]["get"]["parameters"]}
    assert params == {"page", "per_page"}
    student = doc["components"]["schemas"]["Student"]
    assert {"id", "name", "class_name", "student_number"} <= set(student["properties"])
    # every $ref resolves
    text = r.get_data(as_text=True)
    for ref in set(re.findall(r'"\$ref":\s*"#/components/schemas/([^"]+)"', text)):
        assert ref in doc["components"]["schemas"], ref


def test_openapi_matches_what_the_app_registers(app, client):
    doc = client.get("/api/v1/openapi.json").get_json()
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    registered = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1"):
            path = re.sub(r"<(?:[a-z_]+(?:\([^)]*\))?:)?([a-zA-Z_]\w*)>", r"{\1}", rule.rule)
            registered |= {(m, path) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert documented == registered


@pytest.mark.parametrize("role", list(Role), ids=[r.value for r in Role])
def test_identity_fields_agree_with_the_permission_matrix(role):
    fields = fields_for(role)
    if "name" in fields:
        assert can(role, Permission.STUDENT_READ_ROSTER) or can(role, Permission.STUDENT_READ_NAME)
    if "student_number" in fields:
        assert can(role, Permission.STUDENT_READ_NAME)
    assert set(fields) <= set(FIELDS_BY_ROLE.get(role, ()))
