"""JSON API for cases and green-channel referrals (bearer tokens; scope decided by the services).

``GET/POST /api/v1/cases``, ``GET /api/v1/cases/{id}``, ``GET/POST /api/v1/referrals``,
``GET /api/v1/referrals/{id}``, ``POST /api/v1/referrals/{id}/{action}``. Out of scope is 404,
like missing; clinicians see only their institution's referrals.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify

from mh_platform.core.errors import NotFound
from mh_platform.services import cases as case_service
from mh_platform.services import referrals as referral_service
from mh_platform.web.authz import api_auth, current_actor, service_ctx
from mh_platform.web.blueprints.api_v1 import load_json, load_query, parse_uuid
from mh_platform.web.extensions import csrf
from mh_platform.web.openapi import api_doc
from mh_platform.web.schemas.cases import (
    REFERRAL_ACTIONS,
    CaseCreatedSchema,
    CaseCreateSchema,
    CaseDetailSchema,
    CaseListQuerySchema,
    CaseListSchema,
    ReferralActionSchema,
    ReferralCreateSchema,
    ReferralDetailSchema,
    ReferralListQuerySchema,
    ReferralListSchema,
    ReferralStateSchema,
)

bp = Blueprint("api_v1_cases", __name__, url_prefix="/api/v1")
csrf.exempt(bp)


@bp.get("/cases")
@api_auth
@api_doc(summary="Cases the caller reaches (no clinical text)", tags=["cases"], params=CaseListQuerySchema,
         responses={200: CaseListSchema, 422: None})
def list_cases() -> Any:
    q = load_query(CaseListQuerySchema())
    items = case_service.list_cases(service_ctx(), current_actor(), status=q["status"])
    return jsonify(CaseListSchema().dump({"items": items}))


@bp.post("/cases")
@api_auth
@api_doc(summary="Open a case (一生一策) from a confirmed flag", tags=["cases"], body=CaseCreateSchema,
         responses={201: CaseCreatedSchema, 403: None, 404: None, 409: None, 422: None})
def create_case() -> Any:
    data = load_json(CaseCreateSchema())
    cid = case_service.open_case(service_ctx(), current_actor(), data["flag_id"], summary=data["summary"])
    return jsonify(CaseCreatedSchema().dump({"id": str(cid)})), 201


@bp.get("/cases/<case_id>")
@api_auth
@api_doc(summary="One case as the caller may see it (decryptions are logged)", tags=["cases"],
         responses={200: CaseDetailSchema, 404: None})
def get_case(case_id: str) -> Any:
    return jsonify(CaseDetailSchema().dump(case_service.case_detail(service_ctx(), current_actor(),
                                                                    parse_uuid(case_id))))


@bp.get("/referrals")
@api_auth
@api_doc(summary="Referrals the caller reaches: a clinician's institution only; a school; an officer's area",
         tags=["referrals"], params=ReferralListQuerySchema, responses={200: ReferralListSchema, 422: None})
def list_referrals() -> Any:
    q = load_query(ReferralListQuerySchema())
    items = referral_service.list_referrals(service_ctx(), current_actor(), state=q["state"], overdue=q["overdue"])
    return jsonify(ReferralListSchema().dump({"items": items}))


@bp.post("/referrals")
@api_auth
@api_doc(summary="Draft a green-channel referral of a case (and submit it when asked)", tags=["referrals"],
         body=ReferralCreateSchema, responses={201: ReferralStateSchema, 403: None, 404: None, 409: None, 422: None})
def create_referral() -> Any:
    data = load_json(ReferralCreateSchema())
    ctx, actor = service_ctx(), current_actor()
    rid = referral_service.create_referral(ctx, actor, data["case_id"], institution_id=data["institution_id"],
                                           reason=data["reason"])
    out = {"id": str(rid), "state": "draft", "tier": "school", "due_at": None}
    if data["submit"]:
        out = referral_service.transition(ctx, actor, rid, "submit", consent=data["consent"],
                                          reason=data["override_reason"])
    return jsonify(ReferralStateSchema().dump(out)), 201


@bp.get("/referrals/<referral_id>")
@api_auth
@api_doc(summary="One referral as the caller may see it (decryptions are logged)", tags=["referrals"],
         responses={200: ReferralDetailSchema, 404: None})
def get_referral(referral_id: str) -> Any:
    return jsonify(ReferralDetailSchema().dump(referral_service.referral_detail(service_ctx(), current_actor(),
                                                                                parse_uuid(referral_id))))


@bp.post(f"/referrals/<referral_id>/<any({', '.join(REFERRAL_ACTIONS)}):action>")
@api_auth
@api_doc(summary="Move a referral: " + ", ".join(REFERRAL_ACTIONS), tags=["referrals"],
         body=ReferralActionSchema,
         responses={200: ReferralStateSchema, 403: None, 404: None, 409: None, 422: None})
def referral_action(referral_id: str, action: str) -> Any:
    rid = parse_uuid(referral_id)
    if action not in REFERRAL_ACTIONS:
        raise NotFound("unknown action")
    data = load_json(ReferralActionSchema())
    items = data.pop("reentry_items") or None
    if items:
        items = [{**i, "review_at": i["review_at"], "owner_user_id": i.get("owner_user_id")} for i in items]
    out = referral_service.transition(service_ctx(), current_actor(), rid, action, reentry_items=items, **data)
    return jsonify(ReferralStateSchema().dump(out))
