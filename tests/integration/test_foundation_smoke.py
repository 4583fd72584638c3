"""Accounts, login, sessions and the audit chain through the services, on the real database."""

import pytest

from mh_platform.core.errors import ValidationFailed
from mh_platform.core.types import Role, UnitKind
from mh_platform.services import audit, auth
from mh_platform.services.context import SYSTEM
from mh_platform.services.org import add_unit


@pytest.fixture
def school(ctx):
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        city = add_unit(s, kind=UnitKind.CITY, name="盘锦市", code="c", parent=None, now=now)
        county = add_unit(s, kind=UnitKind.COUNTY, name="兴隆台区", code="c1", parent=city, now=now)
        sch = add_unit(s, kind=UnitKind.SCHOOL, name="一中", code="c1s1", parent=county, now=now, stage="junior")
        uow.commit()
        return sch


def test_create_login_logout_rotates_session(ctx, school):
    auth.create_user(ctx, SYSTEM, username="t.counsellor", password="correct horse 1", role=Role.COUNSELLOR,
                     unit_id=school.id)
    res = auth.authenticate(ctx, "t.counsellor", "correct horse 1")
    assert res.ok and res.actor.role == Role.COUNSELLOR and res.actor.unit_path == school.path
    assert auth.actor_from_session_token(ctx, res.session_token) is not None
    auth.logout(ctx, res.actor)
    assert auth.actor_from_session_token(ctx, res.session_token) is None


def test_wrong_password_locks_after_max_attempts(ctx, school):
    auth.create_user(ctx, SYSTEM, username="t.x", password="correct horse 1", role=Role.COUNSELLOR, unit_id=school.id)
    for _ in range(ctx.settings.login_max_attempts):
        assert auth.authenticate(ctx, "t.x", "wrong password!").reason == "bad_credentials"
    assert auth.authenticate(ctx, "t.x", "correct horse 1").reason == "locked"
    ctx.clock.advance(minutes=ctx.settings.login_lockout_minutes + 1)
    assert auth.authenticate(ctx, "t.x", "correct horse 1").ok


def test_create_user_refuses_bad_input(ctx, school):
    with pytest.raises(ValidationFailed, match="role"):
        auth.create_user(ctx, SYSTEM, username="abc", password="correct horse 1", role="wizard", unit_id=school.id)
    with pytest.raises(ValidationFailed, match="at least"):
        auth.create_user(ctx, SYSTEM, username="abc", password="short", role=Role.COUNSELLOR, unit_id=school.id)
    with pytest.raises(ValidationFailed, match="needs an org unit"):
        auth.create_user(ctx, SYSTEM, username="abc", password="correct horse 1", role=Role.COUNSELLOR)


def test_audit_chain_verifies_after_activity(ctx, school):
    auth.create_user(ctx, SYSTEM, username="t.y", password="correct horse 1", role=Role.COUNSELLOR, unit_id=school.id)
    auth.authenticate(ctx, "t.y", "correct horse 1")
    assert audit.verify(ctx).pending >= 2  # recorded, not chained yet: the writers took no lock
    assert audit.sequence(ctx).chained >= 2
    res = audit.verify(ctx)
    assert res.ok and res.checked >= 2 and res.pending == 0


def test_student_identity_is_sealed_and_indexed(ctx, school):
    from datetime import date

    from mh_platform.services import students
    from mh_platform.services.org import add_unit

    with ctx.uow() as uow:
        s = uow.session
        grade = add_unit(s, kind=UnitKind.GRADE, name="七年级", code="g7", parent=school, now=ctx.now(), grade_level=7)
        cls = add_unit(s, kind=UnitKind.CLASS, name="七年级1班", code="g7c1", parent=grade, now=ctx.now(), grade_level=7)
        year = students.ensure_academic_year(s, "2026-2027", date(2026, 9, 1), date(2027, 7, 15))
        st = students.add_student(ctx, s, name="张三", sex="M", birth_year=2013, class_unit=cls, year=year,
                                  now=ctx.now(), student_number="G210000201301011234",
                                  guardians=[students.GuardianIn("张父", "father", "13800000000")])
        uow.commit()
    assert "张三".encode() not in st.name_enc
    with ctx.uow() as uow:
        found = students.find_by_student_number(ctx, uow.session, "g210000201301011234")
        assert found is not None and found.id == st.id
        assert ctx.keyring.open_field(uow.session, found.name_enc, table="student", column="name_enc",
                                      row_id=found.id) == "张三"
