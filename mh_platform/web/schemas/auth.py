"""Schemas of /api/v1/auth and /api/v1/me."""

from __future__ import annotations

from marshmallow import Schema, fields, validate


class TokenRequestSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=200), load_only=True)
    totp = fields.String(validate=validate.Regexp(r"^\d{6}$"), load_only=True,
                         metadata={"description": "6-digit one-time code, for roles that need a second factor"})


class TokenSchema(Schema):
    token = fields.String(required=True, metadata={"description": "bearer token; send as Authorization: Bearer …"})
    expires_at = fields.DateTime(required=True, metadata={"description": "UTC, ISO 8601"})


class RevokedSchema(Schema):
    revoked = fields.Boolean(required=True)


class UnitSchema(Schema):
    id = fields.UUID(required=True)
    kind = fields.String(required=True, metadata={"description": "city / county / school / grade / class"})
    name = fields.String(required=True)
    ancestors = fields.List(fields.String(), required=True, metadata={"description": "names, city first"})


class InstitutionSchema(Schema):
    id = fields.UUID(required=True)
    name = fields.String(required=True)


class MeSchema(Schema):
    user_id = fields.UUID(required=True)
    username = fields.String(required=True)
    display_name = fields.String(required=True)
    role = fields.String(required=True)
    units = fields.List(fields.Nested(UnitSchema), required=True)
    institution = fields.Nested(InstitutionSchema, allow_none=True)
    below = fields.Dict(keys=fields.String(), values=fields.Integer(),
                        metadata={"description": "how many units of each kind lie under the user's unit"})
    students = fields.Integer(metadata={"description": "students actively enrolled under the user's unit"})
