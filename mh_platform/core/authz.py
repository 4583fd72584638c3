"""Role → permission matrix (DESIGN.md "People and what each may do"). Scope by org unit is separate.

Every permission check goes through ``can(role, permission)`` and then the unit scope
(``org_scope.is_within``) or, for clinicians, the institution. Permissions say what a role may do
anywhere in its scope; a row that is out of scope is NotFound, never Forbidden.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from mh_platform.core.types import Role


class Permission(StrEnum):
    """A permission, named ``<resource>:<action>``.

    Grammar: resource is a singular noun (student, flag, case, …); action is a verb, optionally with
    a qualifier after an underscore that narrows it (``read_own`` = only what the caller submitted,
    ``read_red`` = red flags only, ``read_institution`` = only the caller's institution,
    ``read_name`` = the student's identity, ``read_roster`` = names of a class list only).
    Members are kept alphabetised by value; a test enforces it.
    """

    AGGREGATE_READ = "aggregate:read"
    ANSWER_READ = "answer:read"
    AUDIT_VERIFY = "audit:verify"
    BREAKGLASS_REVIEW = "breakglass:review"
    BREAKGLASS_USE = "breakglass:use"
    CAMPAIGN_CREATE = "campaign:create"
    CAMPAIGN_READ = "campaign:read"
    CASE_READ = "case:read"
    CASE_WRITE = "case:write"
    CODE_PRINT = "code:print"
    CONCERN_CREATE = "concern:create"
    CONCERN_READ = "concern:read"
    CONCERN_READ_OWN = "concern:read_own"
    CONSENT_WRITE = "consent:write"
    FLAG_ACKNOWLEDGE = "flag:acknowledge"
    FLAG_ASSESS = "flag:assess"
    FLAG_CLOSE = "flag:close"
    FLAG_ESCALATE = "flag:escalate"
    FLAG_READ = "flag:read"
    FLAG_READ_RED = "flag:read_red"
    FLAG_REVIEW_CLOSE = "flag:review_close"
    INSTITUTION_ADMIN = "institution:admin"
    KEY_ADMIN = "key:admin"
    MODEL_READ_WATCH = "model:read_watch"
    POLICY_ADMIN = "policy:admin"
    REFERRAL_CREATE = "referral:create"
    REFERRAL_READ = "referral:read"
    REFERRAL_READ_INSTITUTION = "referral:read_institution"
    REFERRAL_RESPOND = "referral:respond"
    ROSTER_IMPORT = "roster:import"
    SCORE_READ = "score:read"
    STUDENT_ERASE = "student:erase"
    STUDENT_READ_NAME = "student:read_name"
    STUDENT_READ_ROSTER = "student:read_roster"
    UNIT_ADMIN = "unit:admin"
    USER_ADMIN = "user:admin"


P = Permission

# Clinical data: answers, scores, flags, concerns' content, cases, referrals, the model's watch list.
CLINICAL: frozenset[Permission] = frozenset(
    p for p in Permission
    if p.value.split(":")[0] in {"answer", "score", "flag", "case", "referral", "model"}
) | {P.CONCERN_READ, P.BREAKGLASS_USE}

ROLE_PERMISSIONS: Mapping[Role, frozenset[Permission]] = {
    # a student: own class roster (names only), own concerns and their status
    Role.CLASS_MONITOR: frozenset({P.CONCERN_CREATE, P.CONCERN_READ_OWN, P.STUDENT_READ_ROSTER}),
    # own class: who is flagged, level, tier, what to do — never scores or answers
    Role.HEAD_TEACHER: frozenset({
        P.CAMPAIGN_READ, P.CODE_PRINT, P.CONCERN_CREATE, P.CONCERN_READ, P.CONCERN_READ_OWN, P.CONSENT_WRITE,
        P.FLAG_ACKNOWLEDGE, P.FLAG_CLOSE, P.FLAG_ESCALATE, P.FLAG_READ, P.STUDENT_READ_NAME, P.STUDENT_READ_ROSTER,
    }),
    # everything clinical of own school
    Role.COUNSELLOR: frozenset({
        P.AGGREGATE_READ, P.ANSWER_READ, P.CAMPAIGN_CREATE, P.CAMPAIGN_READ, P.CASE_READ, P.CASE_WRITE, P.CODE_PRINT,
        P.CONCERN_CREATE, P.CONCERN_READ, P.CONCERN_READ_OWN, P.CONSENT_WRITE, P.FLAG_ACKNOWLEDGE, P.FLAG_ASSESS,
        P.FLAG_CLOSE, P.FLAG_ESCALATE, P.FLAG_READ, P.FLAG_REVIEW_CLOSE, P.MODEL_READ_WATCH, P.REFERRAL_CREATE,
        P.REFERRAL_READ, P.ROSTER_IMPORT, P.SCORE_READ, P.STUDENT_READ_NAME, P.STUDENT_READ_ROSTER,
    }),
    # school dashboards and red flags of own school; supervises
    Role.SCHOOL_LEADER: frozenset({
        P.AGGREGATE_READ, P.CAMPAIGN_READ, P.FLAG_ESCALATE, P.FLAG_READ_RED, P.STUDENT_READ_NAME,
    }),
    # county aggregates, flags escalated to (or shown to) the county, referral pipeline, break-glass
    Role.COUNTY_OFFICER: frozenset({
        P.AGGREGATE_READ, P.BREAKGLASS_REVIEW, P.BREAKGLASS_USE, P.CAMPAIGN_CREATE, P.CAMPAIGN_READ,
        P.FLAG_ACKNOWLEDGE, P.FLAG_ESCALATE, P.FLAG_READ, P.REFERRAL_READ, P.STUDENT_READ_NAME,
    }),
    # city aggregates, flags escalated to the city, campaigns, partner institutions and policy, break-glass
    Role.CITY_OFFICER: frozenset({
        P.AGGREGATE_READ, P.AUDIT_VERIFY, P.BREAKGLASS_REVIEW, P.BREAKGLASS_USE, P.CAMPAIGN_CREATE, P.CAMPAIGN_READ,
        P.FLAG_ACKNOWLEDGE, P.FLAG_READ, P.INSTITUTION_ADMIN, P.POLICY_ADMIN, P.REFERRAL_READ, P.STUDENT_ERASE,
        P.STUDENT_READ_NAME,
    }),
    # only referrals addressed to its institution (minimum-necessary student view)
    Role.CLINICIAN: frozenset({P.REFERRAL_READ_INSTITUTION, P.REFERRAL_RESPOND, P.STUDENT_READ_NAME}),
    # accounts, org units, keys, roster import, audit-chain verification; no clinical data.
    # student:erase (crypto-shredding a student) is held by the sysadmin and the city officer; an erasure
    # needs two different holders, one to request and one to approve (services.key_ops).
    Role.SYSADMIN: frozenset({P.AUDIT_VERIFY, P.KEY_ADMIN, P.ROSTER_IMPORT, P.STUDENT_ERASE, P.UNIT_ADMIN,
                              P.USER_ADMIN}),
}

# Which permission gates each flag lifecycle action and referral action (core.flag_lifecycle / core.referrals
# hold the finer role × tier rules; a test checks the two tables agree).
FLAG_ACTION_PERMISSION: Mapping[str, Permission] = {
    "acknowledge": P.FLAG_ACKNOWLEDGE,
    "change_level": P.FLAG_ASSESS,
    "close": P.FLAG_CLOSE,
    "confirm": P.FLAG_ASSESS,
    "dismiss": P.FLAG_ASSESS,
    "escalate": P.FLAG_ESCALATE,
    "refer": P.FLAG_ASSESS,
    "reject_close": P.FLAG_REVIEW_CLOSE,
    "request_close": P.FLAG_CLOSE,
    "review_close": P.FLAG_REVIEW_CLOSE,
    "start_intervention": P.FLAG_ASSESS,
    "start_monitoring": P.FLAG_ASSESS,
}

REFERRAL_ACTION_PERMISSION: Mapping[str, Permission] = {
    "accept": P.REFERRAL_RESPOND,
    "cancel": P.REFERRAL_CREATE,
    "close": P.REFERRAL_CREATE,
    "decline": P.REFERRAL_RESPOND,
    "record_attended": P.REFERRAL_RESPOND,
    "record_feedback": P.REFERRAL_RESPOND,
    "record_no_show": P.REFERRAL_RESPOND,
    "reroute": P.REFERRAL_CREATE,
    "reschedule": P.REFERRAL_RESPOND,
    "schedule": P.REFERRAL_RESPOND,
    "start_follow_up": P.REFERRAL_CREATE,
    "submit": P.REFERRAL_CREATE,
}


def can(role: Role | str | None, permission: Permission | str) -> bool:
    """True when ``role`` holds ``permission``; unknown roles or permissions, and no role (system), hold nothing."""
    if role is None:
        return False
    try:
        return Permission(permission) in ROLE_PERMISSIONS.get(Role(role), frozenset())
    except ValueError:
        return False


def permissions_of(role: Role) -> frozenset[Permission]:
    """Every permission ``role`` holds (empty for an unknown role)."""
    return ROLE_PERMISSIONS.get(role, frozenset())
