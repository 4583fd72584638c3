"""Schemas of the flags and concerns API (``/api/v1/flags``, ``/api/v1/concerns``)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from mh_platform.services.flags import MAX_LIST_OFFSET

LEVELS = ("red", "orange", "yellow")
TIERS = ("class", "school", "county", "city")
STATUSES = ("raised", "acknowledged", "assessed", "intervention", "referral", "monitoring", "close_requested",
            "closed")
CATEGORIES = ("mood", "self_harm", "withdrawal", "conflict", "family", "behaviour", "other")
URGENCIES = ("immediate", "soon", "routine")


class UnitRefSchema(Schema):
    id = fields.String()
    name = fields.String()


class WhatToDoSchema(Schema):
    zh = fields.String()
    en = fields.String()


class FlagSummarySchema(Schema):
    id = fields.String(required=True)
    level = fields.String(validate=validate.OneOf(LEVELS))
    tier = fields.String(validate=validate.OneOf(TIERS))
    status = fields.String(validate=validate.OneOf(STATUSES))
    is_watch = fields.Boolean()
    opened_at = fields.String()
    tier_entered_at = fields.String()
    ack_due_at = fields.String(allow_none=True)
    handle_due_at = fields.String(allow_none=True)
    acknowledged_at = fields.String(allow_none=True)
    closed_at = fields.String(allow_none=True)
    overdue = fields.Boolean()
    escalations = fields.Integer()
    school = fields.Nested(UnitRefSchema, allow_none=True)
    class_ = fields.Nested(UnitRefSchema, allow_none=True, data_key="class")
    pseudonym = fields.String(allow_none=True)
    student_id = fields.String(metadata={"description": "head teacher and counsellor only"})
    what_to_do = fields.Nested(WhatToDoSchema)
    actions = fields.List(fields.String(), metadata={"description": "actions the caller may take now"})


class EvidenceSchema(Schema):
    source = fields.String()
    level = fields.String()
    reason_code = fields.String()
    detail = fields.Dict(allow_none=True)
    response_id = fields.String(allow_none=True)
    concern_id = fields.String(allow_none=True)
    at = fields.String()


class FlagEventSchema(Schema):
    kind = fields.String()
    at = fields.String()
    from_status = fields.String(allow_none=True)
    to_status = fields.String(allow_none=True)
    from_tier = fields.String(allow_none=True)
    to_tier = fields.String(allow_none=True)
    from_level = fields.String(allow_none=True)
    to_level = fields.String(allow_none=True)
    reason_code = fields.String(allow_none=True)
    has_reason = fields.Boolean()


class FlagDetailSchema(FlagSummarySchema):
    events = fields.List(fields.Nested(FlagEventSchema))
    evidence = fields.List(fields.Nested(EvidenceSchema), metadata={"description": "counsellor only"})


class FlagListSchema(Schema):
    items = fields.List(fields.Nested(FlagSummarySchema), required=True)
    total = fields.Integer(required=True)


class FlagListQuerySchema(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(STATUSES))
    level = fields.String(load_default=None, validate=validate.OneOf(LEVELS))
    tier = fields.String(load_default=None, validate=validate.OneOf(TIERS))
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 500))
    offset = fields.Integer(load_default=0, validate=validate.Range(0, MAX_LIST_OFFSET))


class ReasonSchema(Schema):
    reason = fields.String(required=True, validate=validate.Length(min=1, max=2000),
                           metadata={"description": "sealed; shown only to the school's counsellors"})


class OptionalReasonSchema(Schema):
    reason = fields.String(load_default=None, validate=validate.Length(max=2000))


class AssessSchema(Schema):
    outcome = fields.String(required=True, validate=validate.OneOf(("confirm", "change_level", "dismiss")))
    new_level = fields.String(load_default=None, validate=validate.OneOf(LEVELS))
    reason = fields.String(load_default=None, validate=validate.Length(max=2000),
                           metadata={"description": "required for change_level and dismiss"})


class ProgressSchema(Schema):
    action = fields.String(required=True, validate=validate.OneOf(
        ("start_intervention", "refer", "start_monitoring", "review_close", "reject_close")))
    reason = fields.String(load_default=None, validate=validate.Length(max=2000),
                           metadata={"description": "required for reject_close"})


class ConcernCreateSchema(Schema):
    student_id = fields.UUID(required=True)
    category = fields.String(required=True, validate=validate.OneOf(CATEGORIES))
    urgency = fields.String(required=True, validate=validate.OneOf(URGENCIES),
                            metadata={"description": "immediate / soon / routine → red / orange / yellow"})
    note = fields.String(load_default=None, validate=validate.Length(max=2000),
                         metadata={"description": "what was seen; sealed"})


class ConcernCreatedSchema(Schema):
    concern_id = fields.String(required=True)
    flag_id = fields.String(required=True)
    status = fields.String(required=True)


class ConcernSchema(Schema):
    id = fields.String(required=True)
    created_at = fields.String()
    category = fields.String()
    urgency = fields.String()
    status = fields.String(metadata={"description": "received / in_progress / closed"})
    student_id = fields.String()
    pseudonym = fields.String()
    flag_id = fields.String(allow_none=True, metadata={"description": "not shown to class monitors"})
    reporter_role = fields.String()
    mine = fields.Boolean()


class ConcernListSchema(Schema):
    items = fields.List(fields.Nested(ConcernSchema), required=True)
