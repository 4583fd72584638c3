"""Every code a state machine, rule or role table can write fits the column that stores it.

SQLite does not enforce VARCHAR lengths, PostgreSQL does: a code longer than its column fails the
whole transaction there only (``critical_unanswered`` in a 16-character column once refused every
submit with an unanswered critical item on PostgreSQL)."""

from __future__ import annotations

import pytest

from mh_platform.core.flag_lifecycle import FlagEventKind, FlagStatus
from mh_platform.core.flag_rules import EvidenceSource, Urgency
from mh_platform.core.referrals import ConsentBasis, ReferralState
from mh_platform.core.types import Level, Role, Tier, UnitKind
from mh_platform.db.models import (
    AccessLog,
    Case,
    Concern,
    Flag,
    FlagEvent,
    FlagEvidence,
    OrgUnit,
    Referral,
    ReferralEvent,
    RoleAssignment,
)

PAIRS = [
    (EvidenceSource, [FlagEvidence.source]),
    (Level, [Flag.level, FlagEvidence.level, FlagEvent.from_level, FlagEvent.to_level, Case.level, Referral.level]),
    (Tier, [Flag.tier, FlagEvent.from_tier, FlagEvent.to_tier, Referral.tier]),
    (FlagStatus, [Flag.status, FlagEvent.from_status, FlagEvent.to_status]),
    (FlagEventKind, [FlagEvent.kind]),
    (Urgency, [Concern.urgency]),
    (Role, [Concern.reporter_role, RoleAssignment.role, AccessLog.role]),
    (UnitKind, [OrgUnit.kind]),
    (ReferralState, [Referral.state, ReferralEvent.from_state, ReferralEvent.to_state]),
    (ConsentBasis, [Referral.consent_basis]),
]


@pytest.mark.parametrize(("enum", "columns"), PAIRS, ids=[e.__name__ for e, _c in PAIRS])
def test_every_value_fits_its_column(enum, columns):
    longest = max((v.value for v in enum), key=len)
    for col in columns:
        length = col.property.columns[0].type.length
        assert length is None or len(longest) <= length, (col, longest, length)
