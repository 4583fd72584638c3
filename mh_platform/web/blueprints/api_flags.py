"""JSON API for risk flags and concerns (bearer tokens; scope decided by the services).

``GET /api/v1/flags?status=&level=&tier=``, ``GET /api/v1/flags/{id}``,
``POST /api/v1/flags/{id}/acknowledge|assess|escalate|close|progress``, ``POST/GET /api/v1/concerns``.
Out of scope is 404 like missing; a class monitor gets no flag data at all (403 on the list, 404 on
an id) and only the status of their own concerns.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from mh_platform.core.authz import Permission
from mh_platform.core.errors import Forbidden, NotFound
from mh_platform.core.types import Role
from mh_platform.services import concerns as concern_service
from mh_platform.services import flags as flag_service
from mh_platform.web.authz import api_auth, current_actor, has_permission, service_ctx
from mh_platform.web.blueprints.api_v1 import load_json, load_query, parse_uuid
from mh_platform.web.extensions import csrf
from mh_platform.web.openapi import api_doc
from mh_platform.web.schemas.flags import (
    AssessSchema,
    ConcernCreatedSchema,
    ConcernCreateSchema,
    ConcernListSchema,
    FlagDetailSchema,
    FlagListQuerySchema,
    FlagListSchema,
    FlagSummarySchema,
    ProgressSchema,
    ReasonSchema,
)

bp = Blueprint("api_v1_flags", __name__, url_prefix="/api/v1")
csrf.exempt(bp)

FLAG_ROLES = frozenset({Role.HEAD_TEACHER, Role.COUNSELLOR, Role.SCHOOL_LEADER, Role.COUNTY_OFFICER,
                        Role.CITY_OFFICER})


def _reader() -> Any:
    actor = current_actor()
    if actor.role not in FLAG_ROLES or not (has_permission(actor, Permission.FLAG_READ)
                                            or has_permission(actor, Permission.FLAG_READ_RED)):
        return None
    return actor


@bp.get("/flags")
@api_auth
@api_doc(summary="Flags the caller may see (level, tier, status, deadlines; scores only for counsellors)",
         tags=["flags"], params=FlagListQuerySchema, responses={200: FlagListSchema, 403: None, 422: None})
def list_flags() -> Any:
    actor = _reader()
    if actor is None:
        raise Forbidden("your role has no flag queue")
    q = load_query(FlagListQuerySchema())
    items, total = flag_service.list_flags(service_ctx(), actor, status=q["status"], level=q["level"],
                                           tier=q["tier"], limit=q["limit"], offset=q["offset"])
    return jsonify(FlagListSchema().dump({"items": items, "total": total}))


@bp.get("/flags/<flag_id>")
@api_auth
@api_doc(summary="One flag: level, tier, status, deadlines and events (evidence for counsellors)",
         tags=["flags"], responses={200: FlagDetailSchema, 404: None})
def get_flag(flag_id: str) -> Any:
    actor = _reader()
    if actor is None:
        raise NotFound("flag not found")
    return jsonify(FlagDetailSchema().dump(flag_service.get_flag(service_ctx(), actor, parse_uuid(flag_id))))


def _act(flag_id: str, fn: Any) -> Any:
    actor = _reader()
    if actor is None:
        raise NotFound("flag not found")
    return jsonify(FlagSummarySchema().dump(fn(service_ctx(), actor, parse_uuid(flag_id))))


@bp.post("/flags/<flag_id>/acknowledge")
@api_auth
@api_doc(summary="Acknowledge a flag (stops the acknowledge clock)", tags=["flags"],
         responses={200: FlagSummarySchema, 403: None, 404: None, 409: None})
def acknowledge(flag_id: str) -> Any:
    return _act(flag_id, flag_service.acknowledge)


@bp.post("/flags/<flag_id>/assess")
@api_auth
@api_doc(summary="Record the interview: confirm, change the level (reason) or dismiss (reason)", tags=["flags"],
         body=AssessSchema, responses={200: FlagSummarySchema, 403: None, 404: None, 409: None, 422: None})
def assess(flag_id: str) -> Any:
    d = load_json(AssessSchema())
    return _act(flag_id, lambda c, a, f: flag_service.assess(c, a, f, d["outcome"], reason=d["reason"],
                                                             new_level=d["new_level"]))


@bp.post("/flags/<flag_id>/escalate")
@api_auth
@api_doc(summary="Escalate by hand to the next tier (reason required)", tags=["flags"], body=ReasonSchema,
         responses={200: FlagSummarySchema, 403: None, 404: None, 409: None, 422: None})
def escalate(flag_id: str) -> Any:
    d = load_json(ReasonSchema())
    return _act(flag_id, lambda c, a, f: flag_service.escalate(c, a, f, d["reason"]))


@bp.post("/flags/<flag_id>/close")
@api_auth
@api_doc(summary="Close with a reason (red/orange, or a non-counsellor: a close request for counsellor review)",
         tags=["flags"], body=ReasonSchema, responses={200: FlagSummarySchema, 403: None, 404: None, 409: None,
                                                       422: None})
def close(flag_id: str) -> Any:
    d = load_json(ReasonSchema())
    return _act(flag_id, lambda c, a, f: flag_service.close(c, a, f, d["reason"]))


@bp.post("/flags/<flag_id>/progress")
@api_auth
@api_doc(summary="Start intervention, refer, start monitoring, or review a close request", tags=["flags"],
         body=ProgressSchema, responses={200: FlagSummarySchema, 403: None, 404: None, 409: None, 422: None})
def progress(flag_id: str) -> Any:
    d = load_json(ProgressSchema())
    if d["action"] in ("review_close", "reject_close"):
        return _act(flag_id, lambda c, a, f: flag_service.review_close(c, a, f, d["action"] == "review_close",
                                                                       d["reason"]))
    return _act(flag_id, lambda c, a, f: flag_service.act(c, a, f, d["action"], reason=d["reason"]))


@bp.post("/concerns")
@api_auth
@api_doc(summary="Report a concern about a student; opens or joins their flag", tags=["concerns"],
         body=ConcernCreateSchema, responses={201: ConcernCreatedSchema, 403: None, 404: None, 422: None})
def create_concern() -> Any:
    actor = current_actor()
    if not has_permission(actor, Permission.CONCERN_CREATE):
        raise Forbidden("your role does not report concerns")
    d = load_json(ConcernCreateSchema())
    out = concern_service.submit_concern(service_ctx(), actor, student_id=d["student_id"], category=d["category"],
                                         urgency=d["urgency"], note=d["note"])
    return jsonify(ConcernCreatedSchema().dump(out)), 201


@bp.get("/concerns")
@api_auth
@api_doc(summary="Concerns: a monitor's own (status only); a head teacher's class; a counsellor's school",
         tags=["concerns"], responses={200: ConcernListSchema})
def list_concerns() -> Any:
    items = concern_service.list_concerns(service_ctx(), current_actor())
    return jsonify(ConcernListSchema().dump({"items": items}))
