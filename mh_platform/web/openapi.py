"""The OpenAPI 3 document of ``/api/v1``, generated with apispec from marshmallow schemas.

Every ``/api/v1`` view declares its operation with ``@api_doc`` (a test fails for a route that does
not). Schemas live in ``mh_platform/web/schemas/`` (one module per area):

    from mh_platform.web.openapi import api_doc
    from mh_platform.web.schemas.flags import FlagSchema, FlagListSchema

    @bp.get("/flags/<flag_id>")
    @api_doc(summary="One flag", tags=["flags"], responses={200: FlagSchema, 404: None})
    def get_flag(flag_id): ...

``params`` documents query parameters (a marshmallow schema class, each field one parameter);
``body`` the JSON request body; path parameters are taken from the URL rule. ``public=True``
marks an operation that needs no bearer token (only ``/auth/token`` and the document itself).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask

from mh_platform.web.schemas.common import ErrorSchema

F = TypeVar("F", bound=Callable[..., Any])

API_PREFIX = "/api/v1"
_RULE_ARG = re.compile(r"<(?:(?P<conv>[a-z_]+)(?:\((?P<args>[^)]*)\))?:)?(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)>")
_DEFAULT_ERRORS = {400: "Malformed request", 401: "Missing, expired or revoked bearer token",
                   403: "The role may not do this", 404: "Not found, or outside your scope",
                   409: "State conflict", 422: "Invalid input", 429: "Too many requests"}


def api_doc(*, summary: str, tags: list[str] | tuple[str, ...] = (), description: str = "",
            params: type | None = None, body: type | None = None,
            responses: dict[int, type | None] | None = None, public: bool = False) -> Callable[[F], F]:
    """Attach an OpenAPI operation to a view."""

    def deco(view: F) -> F:
        view._mhp_openapi = {  # type: ignore[attr-defined]
            "summary": summary, "tags": list(tags), "description": description, "params": params,
            "body": body, "responses": responses or {200: None}, "public": public,
        }
        return view

    return deco


def _path_and_params(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params: list[dict[str, Any]] = []

    def sub(m: re.Match[str]) -> str:
        conv = m.group("conv") or "string"
        schema: dict[str, Any] = {"type": "string"}
        if conv == "int":
            schema = {"type": "integer"}
        elif conv == "any":  # <any(a, b):name>: only these values route here (anything else is a 404)
            schema = {"type": "string", "enum": [v.strip().strip("'\"") for v in (m.group("args") or "").split(",")]}
        elif conv == "uuid" or m.group("name").endswith("_id"):
            schema = {"type": "string", "format": "uuid"}
        params.append({"in": "path", "name": m.group("name"), "required": True, "schema": schema})
        return "{" + m.group("name") + "}"

    return _RULE_ARG.sub(sub, rule), params


def undocumented_api_rules(app: Flask) -> list[str]:
    """``/api/v1`` rules whose view has no ``@api_doc`` (a test keeps this empty)."""
    out = []
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(API_PREFIX):
            view = app.view_functions.get(rule.endpoint)
            if not hasattr(view, "_mhp_openapi"):
                out.append(f"{sorted(rule.methods - {'HEAD', 'OPTIONS'})} {rule.rule}")
    return sorted(out)


def build_spec(app: Flask) -> dict[str, Any]:
    spec = APISpec(
        title="mh-platform API", version="1.0.0", openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={"description": "学生心理健康四级预警平台 JSON API. Bearer tokens from POST /api/v1/auth/token; "
                             "objects are addressed by UUID; anything outside the caller's scope is a 404."},
        servers=[{"url": "/"}],
    )
    spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer"})
    spec.components.schema("Error", schema=ErrorSchema)
    paths: dict[str, dict[str, Any]] = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(API_PREFIX):
            continue
        view = app.view_functions.get(rule.endpoint)
        meta = getattr(view, "_mhp_openapi", None)
        if meta is None:
            continue
        path, path_params = _path_and_params(rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            op: dict[str, Any] = {"summary": meta["summary"], "operationId": f"{rule.endpoint}.{method.lower()}"}
            if meta["tags"]:
                op["tags"] = meta["tags"]
            if meta["description"]:
                op["description"] = meta["description"]
            parameters = list(path_params)
            if meta["params"] is not None:
                parameters.append({"in": "query", "schema": meta["params"]})
            if parameters:
                op["parameters"] = parameters
            if meta["body"] is not None:
                op["requestBody"] = {"required": True, "content": {"application/json": {"schema": meta["body"]}}}
            responses: dict[str, Any] = {}
            for status, schema in meta["responses"].items():
                if schema is None:
                    desc = _DEFAULT_ERRORS.get(status, "OK" if status < 300 else "Error")
                    responses[str(status)] = ({"description": desc} if status < 300 else
                                              {"description": desc,
                                               "content": {"application/json": {"schema": "Error"}}})
                else:
                    responses[str(status)] = {"description": "OK" if status < 300 else "Error",
                                              "content": {"application/json": {"schema": schema}}}
            if not meta["public"]:
                op["security"] = [{"bearerAuth": []}]
                responses.setdefault("401", {"description": _DEFAULT_ERRORS[401],
                                             "content": {"application/json": {"schema": "Error"}}})
            else:
                op["security"] = []
            op["responses"] = responses
            paths.setdefault(path, {})[method.lower()] = op
    for path, ops in paths.items():
        spec.path(path=path, operations=ops)
    return spec.to_dict()
