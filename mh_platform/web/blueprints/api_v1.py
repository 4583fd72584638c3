"""JSON API ``/api/v1``: bearer tokens only (no cookies, so no CSRF), every route documented.

Other areas add their endpoints in their own blueprint module with ``url_prefix="/api/v1"`` (and a
blueprint name starting with ``api_v1_``), listed in ``web.app.BLUEPRINTS``. The app guard already
requires a valid bearer token for every ``/api/`` path; mark the rare public one with ``@public``.
Every view needs ``@api_doc`` (tests/web/test_openapi.py fails otherwise). Parse the input with a
marshmallow schema (``load_json`` / ``load_query`` below), call a service, dump with a schema.
"""

from __future__ import annotations

import uuid
from typing import Any

from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import Schema, ValidationError

from mh_platform.core.errors import NotFound, ValidationFailed
from mh_platform.services import auth as auth_service
from mh_platform.services import profile as profile_service
from mh_platform.services import students_read
from mh_platform.services import totp as totp_service
from mh_platform.web.authz import api_auth, current_actor, public, service_ctx
from mh_platform.web.errors import error_response
from mh_platform.web.extensions import csrf, throttle_login
from mh_platform.web.openapi import api_doc, build_spec
from mh_platform.web.schemas.auth import MeSchema, RevokedSchema, TokenRequestSchema, TokenSchema
from mh_platform.web.schemas.common import PageQuerySchema
from mh_platform.web.schemas.students import StudentPageSchema, StudentSchema

bp = Blueprint("api_v1", __name__, url_prefix="/api/v1")
csrf.exempt(bp)


# ---- helpers other API modules use ------------------------------------------------------------------

def _errors(exc: ValidationError) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    msgs = exc.messages if isinstance(exc.messages, dict) else {"_": exc.messages}
    for field, problems in msgs.items():
        for p in problems if isinstance(problems, list) else [problems]:
            out.append({"field": str(field), "message": str(p)})
    return out


def load_json(schema: Schema) -> dict[str, Any]:
    """The request's JSON body loaded by ``schema``; ValidationFailed (422) with per-field errors."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ValidationFailed("the request body must be a JSON object",
                               [{"field": "_body", "message": "expected a JSON object"}])
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ValidationFailed("invalid input", _errors(exc)) from None


def load_query(schema: Schema) -> dict[str, Any]:
    try:
        return schema.load(request.args.to_dict())
    except ValidationError as exc:
        raise ValidationFailed("invalid query parameters", _errors(exc)) from None


def parse_uuid(value: str) -> uuid.UUID:
    """A path id; a malformed one is simply not found (404), like a missing one."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError):
        raise NotFound("not found") from None


# ---- auth -------------------------------------------------------------------------------------------

@bp.post("/auth/token")
@public
@throttle_login
@api_doc(summary="Exchange a username and password for a short-lived bearer token", tags=["auth"],
         body=TokenRequestSchema, responses={200: TokenSchema, 401: None, 422: None, 429: None}, public=True)
def issue_token() -> Any:
    data = load_json(TokenRequestSchema())
    res = totp_service.issue_api_token(service_ctx(), data["username"], data["password"], data.get("totp"))
    if res.token is None:
        if res.reason == "totp_required":
            return error_response(401, "totp_required", "this role needs a one-time code: send it as \"totp\"")
        if res.reason == "totp_not_enrolled":
            return error_response(401, "totp_not_enrolled", "this role needs a second factor: sign in on the web "
                                                            "once to set it up")
        return error_response(401, "invalid_credentials", "wrong username, password or code, or the account is locked")
    return jsonify(TokenSchema().dump({"token": res.token, "expires_at": res.expires_at}))


@bp.post("/auth/revoke")
@api_auth
@api_doc(summary="Revoke the bearer token used for this request", tags=["auth"],
         responses={200: RevokedSchema})
def revoke_token() -> Any:
    ok = auth_service.revoke_api_token(service_ctx(), g.api_token)
    return jsonify(RevokedSchema().dump({"revoked": ok}))


@bp.get("/me")
@api_auth
@api_doc(summary="The caller: role and units", tags=["auth"], responses={200: MeSchema})
def me() -> Any:
    prof = profile_service.profile(service_ctx(), current_actor())
    return jsonify(MeSchema().dump({
        "user_id": prof.user_id, "username": prof.username, "display_name": prof.display_name, "role": prof.role,
        "units": [{"id": u.id, "kind": u.kind, "name": u.name, "ancestors": u.ancestors} for u in prof.units],
        "institution": prof.institution, "below": prof.below, "students": prof.students,
    }))


# ---- students ---------------------------------------------------------------------------------------

@bp.get("/students")
@api_auth
@api_doc(summary="Students in the caller's scope, with the fields the role may see", tags=["students"],
         params=PageQuerySchema, responses={200: StudentPageSchema, 422: None})
def list_students() -> Any:
    q = load_query(PageQuerySchema())
    page = students_read.list_students(service_ctx(), current_actor(), page=q["page"], per_page=q["per_page"])
    return jsonify({"items": StudentSchema(many=True).dump(page.items), "page": page.page,
                    "per_page": page.per_page, "total": page.total})


@bp.get("/students/<student_id>")
@api_auth
@api_doc(summary="One student (404 if missing or outside the caller's scope)", tags=["students"],
         responses={200: StudentSchema, 404: None})
def get_student(student_id: str) -> Any:
    item = students_read.get_student(service_ctx(), current_actor(), parse_uuid(student_id))
    return jsonify(StudentSchema().dump(item))


# ---- the document -------------------------------------------------------------------------------------

@bp.get("/openapi.json")
@public
@api_doc(summary="This OpenAPI 3 document", tags=["meta"], public=True)
def openapi() -> Any:
    return jsonify(build_spec(current_app))
