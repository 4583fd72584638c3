"""Schemas of the cases and referrals API (``/api/v1/cases``, ``/api/v1/referrals``)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from mh_platform.core.referrals import ReferralAction, ReferralState

LEVELS = ("red", "orange", "yellow")


class CaseCreateSchema(Schema):
    flag_id = fields.UUID(required=True, metadata={"description": "a flag confirmed by interview (assessed)"})
    summary = fields.String(load_default=None, validate=validate.Length(max=4000),
                            metadata={"description": "sealed; opened only for the case's counsellors"})


class CaseSummarySchema(Schema):
    id = fields.String(required=True)
    pseudonym = fields.String()
    school_name = fields.String()
    level = fields.String(validate=validate.OneOf(LEVELS))
    status = fields.String()
    opened_at = fields.String()
    mine = fields.Boolean()
    next_follow_up = fields.String(allow_none=True)
    overdue = fields.Boolean()
    break_glass_active = fields.Boolean()


class CaseListSchema(Schema):
    items = fields.List(fields.Nested(CaseSummarySchema), required=True)


class CaseListQuerySchema(Schema):
    status = fields.String(load_default=None, validate=validate.OneOf(("open", "transferring", "closed")))


class CaseCreatedSchema(Schema):
    id = fields.String(required=True)


class ReferralSummarySchema(Schema):
    id = fields.String(required=True)
    case_id = fields.String(allow_none=True, metadata={"description": "null for clinicians"})
    state = fields.String(validate=validate.OneOf([s.value for s in ReferralState]))
    tier = fields.String()
    level = fields.String()
    institution_id = fields.String()
    institution_name = fields.String()
    school_name = fields.String()
    pseudonym = fields.String()
    consent_basis = fields.String(allow_none=True)
    decline_code = fields.String(allow_none=True)
    appointment_at = fields.String(allow_none=True)
    requested_at = fields.String(allow_none=True)
    due_at = fields.String(allow_none=True)
    overdue = fields.Boolean()
    escalations = fields.Integer()
    created_at = fields.String()
    actions = fields.List(fields.String(), metadata={"description": "actions the caller may take now"})


class ReferralListSchema(Schema):
    items = fields.List(fields.Nested(ReferralSummarySchema), required=True)


class ReferralListQuerySchema(Schema):
    state = fields.String(load_default=None, validate=validate.OneOf([s.value for s in ReferralState]))
    overdue = fields.Boolean(load_default=False)


class StudentMinimumSchema(Schema):
    pseudonym = fields.String()
    age = fields.Integer(allow_none=True)
    sex = fields.String()
    school_name = fields.String()


class FeedbackSchema(Schema):
    diagnosis_category = fields.String(allow_none=True)
    recommendations = fields.String(allow_none=True)
    return_advice = fields.String(allow_none=True)


class ReferralEventSchema(Schema):
    at = fields.String()
    from_state = fields.String(allow_none=True)
    to_state = fields.String()
    detail = fields.Dict()
    note = fields.String(allow_none=True)


class ReferralDetailSchema(ReferralSummarySchema):
    view = fields.String(metadata={"description": "clinician / full / break_glass / summary"})
    student = fields.Nested(StudentMinimumSchema, allow_none=True,
                            metadata={"description": "clinicians only: the minimum-necessary view"})
    reason = fields.String(allow_none=True)
    override_reason = fields.String(allow_none=True)
    feedback_visible = fields.Boolean()
    feedback = fields.Nested(FeedbackSchema, allow_none=True,
                             metadata={"description": "only the case counsellor and the institution's clinicians"})
    events = fields.List(fields.Nested(ReferralEventSchema))


class PlanItemSchema(Schema):
    id = fields.String()
    kind = fields.String()
    status = fields.String()
    review_at = fields.String()
    owner_user_id = fields.String(allow_none=True)
    overdue = fields.Boolean()
    goal = fields.String(allow_none=True)
    action = fields.String(allow_none=True)


class FollowUpSchema(Schema):
    id = fields.String()
    due_at = fields.String()
    done_at = fields.String(allow_none=True)
    owner_user_id = fields.String(allow_none=True)
    overdue = fields.Boolean()
    note = fields.String(allow_none=True)


class GuardianContactSchema(Schema):
    id = fields.String()
    method = fields.String()
    at = fields.String()
    note = fields.String(allow_none=True)


class CaseDetailSchema(Schema):
    id = fields.String(required=True)
    view = fields.String(metadata={"description": "full / summary (school leader) / break_glass"})
    status = fields.String()
    level = fields.String()
    school_id = fields.String()
    school_name = fields.String()
    flag_id = fields.String(allow_none=True)
    student_id = fields.String()
    pseudonym = fields.String()
    student_name = fields.String(allow_none=True)
    opened_at = fields.String()
    closed_at = fields.String(allow_none=True)
    counsellor_user_id = fields.String(allow_none=True)
    is_case_counsellor = fields.Boolean()
    leader_informed_at = fields.String(allow_none=True)
    summary = fields.String(allow_none=True)
    plan = fields.List(fields.Nested(PlanItemSchema))
    follow_ups = fields.List(fields.Nested(FollowUpSchema))
    guardian_contacts = fields.List(fields.Nested(GuardianContactSchema))
    counts = fields.Dict()
    referrals = fields.List(fields.Nested(ReferralDetailSchema))
    pending_transfer_id = fields.String(allow_none=True)
    student_moved_to = fields.String(allow_none=True)


class ReentryItemSchema(Schema):
    goal = fields.String(required=True)
    action = fields.String(required=True)
    review_at = fields.AwareDateTime(required=True)
    owner_user_id = fields.UUID(load_default=None)


class ReferralCreateSchema(Schema):
    case_id = fields.UUID(required=True)
    institution_id = fields.UUID(required=True)
    reason = fields.String(required=True, validate=validate.Length(min=1, max=4000))
    submit = fields.Boolean(load_default=False, metadata={"description": "also submit now (needs consent)"})
    consent = fields.String(load_default=None, validate=validate.OneOf(("guardian", "override")))
    override_reason = fields.String(load_default=None, validate=validate.Length(max=4000))


class ReferralActionSchema(Schema):
    reason = fields.String(load_default=None, validate=validate.Length(max=4000))
    institution_id = fields.UUID(load_default=None, metadata={"description": "reroute: the new institution"})
    appointment_at = fields.AwareDateTime(load_default=None)
    consent = fields.String(load_default=None, validate=validate.OneOf(("guardian", "override")))
    decline_code = fields.String(load_default=None)
    diagnosis_category = fields.String(load_default=None)
    recommendations = fields.String(load_default=None, validate=validate.Length(max=4000))
    return_advice = fields.String(load_default=None, validate=validate.Length(max=4000))
    reentry_items = fields.List(fields.Nested(ReentryItemSchema), load_default=None)


class ReferralStateSchema(Schema):
    id = fields.String(required=True)
    state = fields.String(required=True)
    tier = fields.String(required=True)
    due_at = fields.String(allow_none=True)


REFERRAL_ACTIONS = tuple(a.value for a in ReferralAction)
