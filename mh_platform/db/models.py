"""Every model, imported in one place (Alembic's env.py and services use this)."""

from mh_platform.db.base import Base
from mh_platform.db.cases import (
    BreakGlass,
    Case,
    FollowUp,
    GuardianContact,
    PlanItem,
    Referral,
    ReferralEvent,
    Transfer,
)
from mh_platform.db.flags import ClusterAlert, Concern, Flag, FlagEvent, FlagEvidence
from mh_platform.db.ops import (
    AccessLog,
    AuditAnchor,
    DataKey,
    ErasureLedger,
    ErasureRequest,
    EventLog,
    InboxMessage,
    JobRun,
    Outbox,
    RateLimitCounter,
    SchedulerLease,
    Setting,
)
from mh_platform.db.org import AcademicYear, Institution, OrgUnit
from mh_platform.db.people import ApiToken, Consent, Enrolment, Guardian, RoleAssignment, Student, User
from mh_platform.db.screening import AccessCode, Campaign, CampaignUnit, Response

__all__ = [
    "AcademicYear", "AccessCode", "AccessLog", "ApiToken", "AuditAnchor", "Base", "BreakGlass", "Campaign",
    "CampaignUnit", "Case", "ClusterAlert", "Concern", "Consent", "DataKey", "Enrolment", "ErasureLedger",
    "ErasureRequest", "EventLog", "Flag", "FlagEvent", "FlagEvidence", "FollowUp", "Guardian", "GuardianContact",
    "InboxMessage",
    "Institution", "JobRun", "OrgUnit", "Outbox", "PlanItem", "RateLimitCounter", "Referral", "ReferralEvent",
    "Response", "RoleAssignment",
    "SchedulerLease", "Setting", "Student", "Transfer", "User",
]
