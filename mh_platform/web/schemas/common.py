"""Schemas shared by every area: errors and pagination."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from mh_platform.services.students_read import MAX_PAGE, MAX_PER_PAGE


class FieldErrorSchema(Schema):
    field = fields.String()
    message = fields.String()


class ErrorSchema(Schema):
    error = fields.String(required=True, metadata={"description": "machine-readable code, e.g. not_found"})
    message = fields.String(required=True)
    errors = fields.List(fields.Dict(), metadata={"description": "per-field problems, when input was invalid"})


class PageQuerySchema(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE), metadata={"description": "1-based"})
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=MAX_PER_PAGE))


def page_envelope(item_schema: type[Schema], name: str) -> type[Schema]:
    """A ``{"items": [...], "page", "per_page", "total"}`` schema for ``item_schema``."""
    return type(name, (Schema,), {
        "items": fields.List(fields.Nested(item_schema), required=True),
        "page": fields.Integer(required=True),
        "per_page": fields.Integer(required=True),
        "total": fields.Integer(required=True),
    })
