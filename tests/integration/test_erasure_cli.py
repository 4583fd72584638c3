"""`mhp keys shred-request / shred-approve / shred-list / shred-cancel` through click's CliRunner on
the test database: every step names a user and checks their password (and TOTP code when their role
needs one); two different users erase a student, one alone never does."""

from __future__ import annotations

import json
from dataclasses import replace

import pyotp
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flags_world import PASSWORD, build_world, quick_hashes  # noqa: F401 - fixtures

from mh_platform.cli import _common
from mh_platform.cli.keys import cli as keys_cli
from mh_platform.core.errors import Forbidden
from mh_platform.crypto import envelope as env
from mh_platform.db.models import DataKey, ErasureRequest, EventLog, Student
from mh_platform.services import auth, key_ops, totp


@pytest.fixture
def world(ctx, tmp_path, monkeypatch):
    ctx.settings = replace(ctx.settings, erasure_ledger_file=str(tmp_path / "ledger.jsonl"))
    monkeypatch.setattr(_common, "make_ctx", lambda bootstrap=True: ctx)  # the CLI runs on the test database
    return build_world(ctx, n=2)


def mhp_keys(args, stdin=""):
    return CliRunner().invoke(keys_cli, args, input=stdin)


def request(sid, user, password=PASSWORD):
    return mhp_keys(["shred-request", str(sid), "--reason", "guardian_request", "--user", user], f"{password}\n")


def live_keys(ctx, sid) -> int:
    with ctx.uow() as uow:
        return uow.session.scalar(sa.select(sa.func.count()).select_from(DataKey)
                                  .where(DataKey.student_id == sid, DataKey.wrapped.is_not(None)))


def requests(ctx) -> int:
    with ctx.uow() as uow:
        return uow.session.scalar(sa.select(sa.func.count()).select_from(ErasureRequest))


def read_name(ctx, sid):
    with ctx.uow() as uow:
        st = uow.session.get(Student, sid)
        return ctx.keyring.open_field(uow.session, st.name_enc, table="student", column="name_enc", row_id=sid)


def test_the_single_person_shred_command_is_gone(world):
    res = mhp_keys(["shred", str(world.students[0]), "--yes"])
    assert res.exit_code != 0 and "No such command" in res.output


def test_a_wrong_password_is_refused_and_nothing_is_requested(ctx, world):
    res = request(world.students[0], "t.admin", "not the password")
    assert res.exit_code != 0
    assert "authentication failed for t.admin" in res.output
    assert "not the password" not in res.output  # the password is not echoed
    assert requests(ctx) == 0
    res = request(world.students[0], "t.nobody")
    assert res.exit_code != 0 and "authentication failed" in res.output
    assert requests(ctx) == 0


def test_two_different_users_erase_a_student_one_alone_cannot(ctx, world):
    sid = world.students[0]
    name = read_name(ctx, sid)
    res = request(sid, "t.admin")
    assert res.exit_code == 0, res.output
    req = json.loads(res.output.strip().splitlines()[-1])
    assert req["student"] == str(sid) and req["status"] == "pending"

    res = mhp_keys(["shred-list", "--user", "t.city"], f"{PASSWORD}\n")
    assert res.exit_code == 0, res.output
    (listed,) = json.loads(res.output.strip().splitlines()[-1])
    assert listed["request"] == req["request"] and set(listed) == {
        "request", "student", "reason", "status", "requested_by", "requested_at", "expires_at"}

    approve = ["shred-approve", req["request"], "--user"]
    # the requester cannot approve: password right, person wrong
    res = mhp_keys([*approve, "t.admin", "--yes"], f"{PASSWORD}\n")
    assert res.exit_code != 0 and isinstance(res.exception, Forbidden)
    # a second person with a wrong password
    res = mhp_keys([*approve, "t.city", "--yes"], "wrong password 1\n")
    assert res.exit_code != 0 and "authentication failed for t.city" in res.output
    # the confirmation is still asked, and "no" stops before the password
    res = mhp_keys([*approve, "t.city"], "n\n")
    assert res.exit_code != 0 and "Password" not in res.output
    assert read_name(ctx, sid) == name and live_keys(ctx, sid) >= 1

    res = mhp_keys([*approve, "t.city"], f"y\n{PASSWORD}\n")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output.strip().splitlines()[-1])
    assert out["destroyed_keys"] >= 1 and out["student"] == str(sid)
    assert live_keys(ctx, sid) == 0
    with pytest.raises(env.KeyShredded):
        read_name(ctx, sid)
    (line,) = key_ops.read_ledger_file(ctx)
    assert (line["requested_by"], line["approved_by"]) == (
        str(world.actors["admin"].user_id), str(world.actors["city"].user_id))


def test_a_head_teacher_with_the_right_password_still_cannot_shred(ctx, world):
    sid = world.students[0]
    res = request(sid, "t.head")
    assert res.exit_code != 0 and isinstance(res.exception, Forbidden)
    assert requests(ctx) == 0 and live_keys(ctx, sid) >= 1


def test_a_role_that_needs_totp_must_give_a_valid_code(ctx, world, clock):
    ctx.settings = replace(ctx.settings, totp_roles=("city_officer",))
    login = auth.authenticate(ctx, "t.city", PASSWORD)
    secret = totp.candidate_secret(ctx, login.pending_token)
    assert totp.enrol(ctx, login.pending_token, pyotp.TOTP(secret).at(clock.now())) is not None
    clock.advance(minutes=2)
    sid = world.students[1]
    req = json.loads(request(sid, "t.admin").output.strip().splitlines()[-1])  # sysadmin: no TOTP needed here
    approve = ["shred-approve", req["request"], "--user", "t.city", "--yes"]

    res = mhp_keys(approve, f"{PASSWORD}\n\n")  # no code given
    assert res.exit_code != 0 and "a TOTP code is required for t.city" in res.output
    code = pyotp.TOTP(secret).at(clock.now())
    wrong = next(f"{i:06d}" for i in range(10**6) if f"{i:06d}" != code)
    res = mhp_keys(approve, f"{PASSWORD}\n{wrong}\n")
    assert res.exit_code != 0 and "authentication failed for t.city (TOTP)" in res.output
    assert live_keys(ctx, sid) >= 1
    with ctx.uow() as uow:
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(EventLog)
                                  .where(EventLog.kind == "auth:totp_failed")) == 1

    res = mhp_keys(approve, f"{PASSWORD}\n{code}\n")
    assert res.exit_code == 0, res.output
    assert live_keys(ctx, sid) == 0


def test_cancel_by_the_requester(ctx, world):
    sid = world.students[0]
    req = json.loads(request(sid, "t.city").output.strip().splitlines()[-1])
    res = mhp_keys(["shred-cancel", req["request"], "--user", "t.city"], f"{PASSWORD}\n")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output.strip().splitlines()[-1]) == {"request": req["request"], "status": "cancelled"}
    res = mhp_keys(["shred-approve", req["request"], "--user", "t.admin", "--yes"], f"{PASSWORD}\n")
    assert res.exit_code != 0 and "cancelled" in str(res.exception)
    assert live_keys(ctx, sid) >= 1
