"""The whole role → permission matrix, pinned. Changing access is a deliberate edit of EXPECTED below."""

import pytest

from mh_platform.core import flag_lifecycle, referrals
from mh_platform.core.authz import (
    CLINICAL,
    FLAG_ACTION_PERMISSION,
    REFERRAL_ACTION_PERMISSION,
    ROLE_PERMISSIONS,
    Permission,
    can,
    permissions_of,
)
from mh_platform.core.types import Role

M, HT, C, SL, CO, CI, CL, SA = (Role.CLASS_MONITOR, Role.HEAD_TEACHER, Role.COUNSELLOR, Role.SCHOOL_LEADER,
                                Role.COUNTY_OFFICER, Role.CITY_OFFICER, Role.CLINICIAN, Role.SYSADMIN)

# permission → roles holding it (read as a table: one line per permission)
EXPECTED: dict[str, set[Role]] = {
    "aggregate:read": {C, SL, CO, CI},
    "answer:read": {C},
    "audit:verify": {CI, SA},
    "breakglass:review": {CO, CI},
    "breakglass:use": {CO, CI},
    "campaign:create": {C, CO, CI},
    "campaign:read": {HT, C, SL, CO, CI},
    "case:read": {C},
    "case:write": {C},
    "code:print": {HT, C},
    "concern:create": {M, HT, C},
    "concern:read": {HT, C},
    "concern:read_own": {M, HT, C},
    "consent:write": {HT, C},
    "flag:acknowledge": {HT, C, CO, CI},
    "flag:assess": {C},
    "flag:close": {HT, C},
    "flag:escalate": {HT, C, SL, CO},
    "flag:read": {HT, C, CO, CI},
    "flag:read_red": {SL},
    "flag:review_close": {C},
    "institution:admin": {CI},
    "key:admin": {SA},
    "model:read_watch": {C},
    "policy:admin": {CI},
    "referral:create": {C},
    "referral:read": {C, CO, CI},
    "referral:read_institution": {CL},
    "referral:respond": {CL},
    "roster:import": {C, SA},
    "score:read": {C},
    "student:erase": {CI, SA},
    "student:read_name": {HT, C, SL, CO, CI, CL},
    "student:read_roster": {M, HT, C},
    "unit:admin": {SA},
    "user:admin": {SA},
}


def test_matrix_is_exactly_the_expected_table():
    assert {p.value for p in Permission} == set(EXPECTED), "a permission was added or removed"
    for perm in Permission:
        holders = {r for r in Role if can(r, perm)}
        assert holders == EXPECTED[perm.value], perm.value


def test_every_role_has_a_row():
    assert set(ROLE_PERMISSIONS) == set(Role)


def test_permissions_alphabetised_and_follow_grammar():
    values = [p.value for p in Permission]
    assert values == sorted(values)
    for v in values:
        resource, _, action = v.partition(":")
        assert resource.isidentifier() and action and action.replace("_", "").isalpha(), v


def test_sysadmin_has_no_clinical_permission():
    assert not (permissions_of(SA) & CLINICAL)
    assert {"answer:read", "score:read", "case:read", "flag:read"} <= {p.value for p in CLINICAL}


def test_monitor_has_no_flag_score_answer_or_case_permission():
    assert {p.value.split(":")[0] for p in permissions_of(M)} == {"concern", "student"}
    assert not can(M, "student:read_name")


def test_head_teacher_never_reads_scores_or_answers_and_clinician_only_institution():
    assert not can(HT, Permission.SCORE_READ) and not can(HT, Permission.ANSWER_READ)
    assert not can(SL, Permission.FLAG_READ) and can(SL, Permission.FLAG_READ_RED)
    assert {p.value.split(":")[0] for p in permissions_of(CL)} == {"referral", "student"}
    assert not can(CL, Permission.REFERRAL_READ)


@pytest.mark.parametrize(("role", "perm"), [(None, "flag:read"), ("nobody", "flag:read"), (C, "flag:fly")])
def test_unknown_inputs_hold_nothing(role, perm):
    assert not can(role, perm)


def test_string_inputs():
    assert can("counsellor", "score:read")


def test_flag_lifecycle_roles_hold_the_gate_permission():
    assert set(FLAG_ACTION_PERMISSION) == {a.value for a in flag_lifecycle.FlagAction}
    for t in flag_lifecycle.TRANSITIONS:
        for role in t.actors:
            assert can(role, FLAG_ACTION_PERMISSION[t.action]), (role, t.action)


def test_referral_roles_hold_the_gate_permission():
    assert set(REFERRAL_ACTION_PERMISSION) == {a.value for a in referrals.ReferralAction}
    for t in referrals.TRANSITIONS:
        for role in t.roles:
            assert can(role, REFERRAL_ACTION_PERMISSION[t.action]), (role, t.action)
