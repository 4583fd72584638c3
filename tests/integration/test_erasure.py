"""Two-person crypto-shredding (security test plan T8, ASVS 2.3.5): one person can never destroy a
student's keys. A named user holding ``student:erase`` (sysadmin, city officer) requests, a
*different* one approves within 7 days, and only the approval destroys the keys — with the ledger
row, the ledger file line, the audit events and unreadable fields that the approval must leave."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest
import sqlalchemy as sa
from flags_world import build_world, quick_hashes  # noqa: F401 - fixtures

from mh_platform.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from mh_platform.crypto import envelope as env
from mh_platform.crypto import shredding
from mh_platform.db.models import DataKey, ErasureLedger, ErasureRequest, EventLog, Guardian, Student
from mh_platform.services import auth, key_ops
from mh_platform.services.context import SYSTEM


@pytest.fixture
def world(ctx, tmp_path):
    ctx.settings = replace(ctx.settings, erasure_ledger_file=str(tmp_path / "ledger.jsonl"))
    return build_world(ctx, n=3)


def read_name(ctx, sid):
    with ctx.uow() as uow:
        st = uow.session.get(Student, sid)
        return ctx.keyring.open_field(uow.session, st.name_enc, table="student", column="name_enc", row_id=sid)


def live_keys(ctx, sid) -> int:
    with ctx.uow() as uow:
        return uow.session.scalar(sa.select(sa.func.count()).select_from(DataKey)
                                  .where(DataKey.student_id == sid, DataKey.wrapped.is_not(None)))


def events(ctx, kind):
    with ctx.uow() as uow:
        return list(uow.session.execute(sa.select(EventLog.actor_user_id, EventLog.object_id, EventLog.data)
                                        .where(EventLog.kind == kind).order_by(EventLog.id)))


def request_status(ctx, rid) -> str:
    with ctx.uow() as uow:
        return uow.session.get(ErasureRequest, uuid.UUID(rid)).status


def assert_untouched(ctx, sid, name):
    """Nothing was destroyed: the name still opens, the keys are live, no ledger anywhere."""
    assert read_name(ctx, sid) == name
    assert live_keys(ctx, sid) >= 1
    with ctx.uow() as uow:
        assert uow.session.scalar(sa.select(ErasureLedger.id).where(ErasureLedger.student_id == sid)) is None
        assert uow.session.get(Student, sid).erased_at is None
    assert key_ops.read_ledger_file(ctx) == []


def test_the_single_step_shred_is_gone():
    assert not hasattr(key_ops, "shred_student")


def test_R6_a_head_teacher_alone_cannot_shred(ctx, world):
    """The reviewer's scenario: a head teacher trying to erase a student of their own class."""
    sid, head = world.students[0], world.actors["head"]
    name = read_name(ctx, sid)
    with pytest.raises(Forbidden):
        key_ops.request_erasure(ctx, head, sid, "erasure_request")
    req = key_ops.request_erasure(ctx, world.actors["admin"], sid, "guardian_request")
    with pytest.raises(Forbidden):
        key_ops.approve_erasure(ctx, head, req["request"])
    assert_untouched(ctx, sid, name)
    assert [e.data["code"] for e in events(ctx, "keys:erasure_refused")] == ["role", "role"]
    assert {e.actor_user_id for e in events(ctx, "keys:erasure_refused")} == {head.user_id}


def test_the_requester_cannot_approve_their_own_request(ctx, world):
    sid, admin = world.students[0], world.actors["admin"]
    name = read_name(ctx, sid)
    req = key_ops.request_erasure(ctx, admin, sid, "guardian_request")
    assert live_keys(ctx, sid) >= 1  # a request alone destroys nothing
    with pytest.raises(Forbidden, match="second person"):
        key_ops.approve_erasure(ctx, admin, req["request"])
    assert_untouched(ctx, sid, name)
    assert request_status(ctx, req["request"]) == "pending"
    refused = events(ctx, "keys:erasure_refused")
    assert [(e.actor_user_id, e.object_id, e.data) for e in refused] == [
        (admin.user_id, req["request"], {"code": "same_person"})]


@pytest.mark.parametrize("role_key", ["monitor", "head", "counsellor", "leader", "county"])
def test_roles_without_student_erase_can_neither_request_nor_approve(ctx, world, role_key):
    sid, actor = world.students[1], world.actors[role_key]
    name = read_name(ctx, sid)
    with pytest.raises(Forbidden):
        key_ops.request_erasure(ctx, actor, sid, "guardian_request")
    req = key_ops.request_erasure(ctx, world.actors["city"], sid, "guardian_request")
    with pytest.raises(Forbidden):
        key_ops.approve_erasure(ctx, actor, req["request"])
    with pytest.raises(Forbidden):
        key_ops.cancel_erasure(ctx, actor, req["request"])
    assert_untouched(ctx, sid, name)
    assert request_status(ctx, req["request"]) == "pending"


def test_anonymous_and_system_actors_and_disabled_accounts_are_refused(ctx, world):
    from mh_platform.cli._common import CLI_ACTOR

    sid = world.students[0]
    name = read_name(ctx, sid)
    req = key_ops.request_erasure(ctx, world.actors["admin"], sid, "guardian_request")
    for anonymous in (CLI_ACTOR, SYSTEM):
        with pytest.raises(Forbidden):
            key_ops.request_erasure(ctx, anonymous, world.students[1], "guardian_request")
        with pytest.raises(Forbidden):
            key_ops.approve_erasure(ctx, anonymous, req["request"])
    auth.set_active(ctx, SYSTEM, world.actors["city"].user_id, False)  # the would-be approver leaves
    with pytest.raises(Forbidden):
        key_ops.approve_erasure(ctx, world.actors["city"], req["request"])
    assert_untouched(ctx, sid, name)


def test_a_disabled_requesters_request_cannot_be_approved(ctx, world):
    sid = world.students[0]
    name = read_name(ctx, sid)
    req = key_ops.request_erasure(ctx, world.actors["admin"], sid, "guardian_request")
    auth.set_active(ctx, SYSTEM, world.actors["admin"].user_id, False)
    with pytest.raises(InvalidTransition, match="disabled"):
        key_ops.approve_erasure(ctx, world.actors["city"], req["request"])
    assert_untouched(ctx, sid, name)


def test_an_expired_request_cannot_be_approved_and_a_new_one_can_be_filed(ctx, world, clock):
    sid, admin, city = world.students[0], world.actors["admin"], world.actors["city"]
    name = read_name(ctx, sid)
    req = key_ops.request_erasure(ctx, admin, sid, "guardian_request")
    assert req["expires_at"] == (clock.now() + shredding.ERASURE_REQUEST_TTL).isoformat()
    clock.advance(days=7)
    with pytest.raises(InvalidTransition, match="expired"):
        key_ops.approve_erasure(ctx, city, req["request"])
    assert_untouched(ctx, sid, name)
    assert key_ops.pending_erasures(ctx, city) == []  # the list no longer offers it
    assert request_status(ctx, req["request"]) == "expired"
    again = key_ops.request_erasure(ctx, city, sid, "guardian_request")
    clock.advance(days=7, seconds=-1)  # the last second of the new request
    assert key_ops.approve_erasure(ctx, admin, again["request"])["destroyed_keys"] >= 1
    assert [e.object_id for e in events(ctx, "keys:erasure_expired")] == [req["request"]]


def test_two_different_authorised_people_erase_the_student(ctx, world, clock):
    sid, admin, city = world.students[0], world.actors["admin"], world.actors["city"]
    name = read_name(ctx, sid)
    req = key_ops.request_erasure(ctx, admin, sid, "guardian_request")
    assert [r["request"] for r in key_ops.pending_erasures(ctx, city)] == [req["request"]]
    clock.advance(hours=20)
    out = key_ops.approve_erasure(ctx, city, req["request"])
    assert out["destroyed_keys"] >= 1 and out["already"] is False and out["student"] == str(sid)

    # every encrypted field of the student is unreadable for good; the blind indexes are gone
    with pytest.raises(env.KeyShredded):
        read_name(ctx, sid)
    assert live_keys(ctx, sid) == 0
    with ctx.uow() as uow:
        s = uow.session
        st = s.get(Student, sid)
        assert st.erased_at == clock.now()
        assert st.student_number_bidx is None and st.id_number_bidx is None
        assert all(p is None for p in s.scalars(sa.select(Guardian.phone_bidx).where(Guardian.student_id == sid)))
        ledger = s.scalar(sa.select(ErasureLedger).where(ErasureLedger.student_id == sid))
        assert (ledger.erased_by, ledger.request_id, ledger.reason_code) == (
            city.user_id, uuid.UUID(req["request"]), "guardian_request")
        row = s.get(ErasureRequest, uuid.UUID(req["request"]))
        assert (row.status, row.requested_by, row.decided_by, row.decided_at) == (
            "approved", admin.user_id, city.user_id, clock.now())
        other = world.students[1]
        assert s.scalar(sa.select(sa.func.count()).select_from(DataKey).where(
            DataKey.student_id == other, DataKey.wrapped.is_not(None))) >= 1  # nobody else's keys
    assert read_name(ctx, world.students[1]).startswith("学生")

    # the off-database ledger: one line naming both people, by id
    (line,) = key_ops.read_ledger_file(ctx)
    record = shredding.ErasureRecord.from_ledger_dict(line)
    assert (record.student_id, record.requested_by, record.approved_by, record.erasure_id, record.reason_code) == (
        sid, admin.user_id, city.user_id, uuid.UUID(req["request"]), "guardian_request")
    assert record.erased_at == clock.now()

    # every step audited, with ids and codes only
    (requested,) = events(ctx, "keys:erasure_requested")
    (approved,) = events(ctx, "keys:erasure_approved")
    (shredded,) = events(ctx, "keys:student_shredded")
    assert (requested.actor_user_id, requested.object_id) == (admin.user_id, req["request"])
    assert (approved.actor_user_id, approved.object_id) == (city.user_id, req["request"])
    assert approved.data == {"student": str(sid), "requested_by": str(admin.user_id)}
    assert (shredded.actor_user_id, shredded.object_id) == (city.user_id, str(sid))
    assert shredded.data["reason"] == "guardian_request" and shredded.data["request"] == req["request"]
    dumped = json.dumps([requested.data, approved.data, shredded.data, line], ensure_ascii=False)
    assert name not in dumped and "t.admin" not in dumped and "t.city" not in dumped

    # approving twice, requesting again, cancelling afterwards: clear refusals, nothing more written
    with pytest.raises(InvalidTransition, match="approved"):
        key_ops.approve_erasure(ctx, city, req["request"])
    with pytest.raises(InvalidTransition, match="already erased"):
        key_ops.request_erasure(ctx, admin, sid, "guardian_request")
    with pytest.raises(InvalidTransition, match="approved"):
        key_ops.cancel_erasure(ctx, admin, req["request"])
    assert len(key_ops.read_ledger_file(ctx)) == 1
    assert len(events(ctx, "keys:student_shredded")) == 1


def test_cancelled_and_rejected_requests_cannot_be_approved(ctx, world):
    s0, s1 = world.students[0], world.students[1]
    names = {s0: read_name(ctx, s0), s1: read_name(ctx, s1)}
    admin, city = world.actors["admin"], world.actors["city"]
    mine = key_ops.request_erasure(ctx, admin, s0, "guardian_request")
    theirs = key_ops.request_erasure(ctx, admin, s1, "guardian_request")
    assert key_ops.cancel_erasure(ctx, admin, mine["request"]) == {"request": mine["request"], "status": "cancelled"}
    assert key_ops.cancel_erasure(ctx, city, theirs["request"]) == {"request": theirs["request"], "status": "rejected"}
    with pytest.raises(InvalidTransition, match="cancelled"):
        key_ops.approve_erasure(ctx, city, mine["request"])
    with pytest.raises(InvalidTransition, match="rejected"):
        key_ops.approve_erasure(ctx, city, theirs["request"])
    for sid, name in names.items():
        assert_untouched(ctx, sid, name)
    assert [e.data["code"] for e in events(ctx, "keys:erasure_refused")] == ["not_pending", "not_pending"]
    assert len(events(ctx, "keys:erasure_cancelled")) == len(events(ctx, "keys:erasure_rejected")) == 1


def test_one_pending_request_per_student_and_reason_is_a_code(ctx, world):
    sid = world.students[0]
    first = key_ops.request_erasure(ctx, world.actors["admin"], sid, "guardian_request")
    with pytest.raises(InvalidTransition, match=first["request"]):
        key_ops.request_erasure(ctx, world.actors["city"], sid, "guardian_request")
    for bad in ("家长要求删除", "Guardian request", "x" * 33, ""):
        with pytest.raises(ValidationFailed, match="code"):
            key_ops.request_erasure(ctx, world.actors["city"], world.students[1], bad)
    with pytest.raises(NotFound):
        key_ops.approve_erasure(ctx, world.actors["city"], "not-a-uuid")


def test_a_city_officer_reaches_only_students_of_their_city(ctx, world):
    other = build_world(ctx, n=1, prefix="b")
    far = other.students[0]
    name = read_name(ctx, far)
    with pytest.raises(NotFound):
        key_ops.request_erasure(ctx, world.actors["city"], far, "guardian_request")
    req = key_ops.request_erasure(ctx, other.actors["city"], far, "guardian_request")
    with pytest.raises(NotFound):  # out of scope looks like missing
        key_ops.approve_erasure(ctx, world.actors["city"], req["request"])
    assert key_ops.pending_erasures(ctx, world.actors["city"]) == []
    assert_untouched(ctx, far, name)
    # the sysadmin has no unit: they reach every student
    assert key_ops.approve_erasure(ctx, world.actors["admin"], req["request"])["destroyed_keys"] >= 1


def test_the_pending_request_index_refuses_a_second_live_request_for_a_student(ctx, world):
    """The database backs the one-live-request rule, so two concurrent requesters cannot both win."""
    sid, admin = world.students[0], world.actors["admin"]
    key_ops.request_erasure(ctx, admin, sid, "guardian_request")
    now = ctx.now()
    with ctx.uow() as uow:
        uow.session.add(ErasureRequest(student_id=sid, reason_code="x", status="pending",
                                       requested_by=world.actors["city"].user_id, requested_at=now,
                                       expires_at=now))
        with pytest.raises(sa.exc.IntegrityError):
            uow.session.flush()


def test_the_ledger_file_line_alone_replays_the_erasure(ctx, world, clock):
    """What a restore relies on: the off-database line (erasure.v1) re-creates the ledger row."""
    sid = world.students[0]
    req = key_ops.request_erasure(ctx, world.actors["admin"], sid, "guardian_request")
    key_ops.approve_erasure(ctx, world.actors["city"], req["request"])
    erased_at = clock.now()
    with ctx.uow() as uow:  # as in a backup taken before the erasure: no ledger row
        uow.session.execute(sa.delete(ErasureLedger).where(ErasureLedger.student_id == sid))
        uow.commit()
    clock.advance(days=1)
    key_ops.replay_ledger(ctx)
    with ctx.uow() as uow:
        row = uow.session.scalar(sa.select(ErasureLedger).where(ErasureLedger.student_id == sid))
        assert (row.reason_code, row.erased_at, row.erased_by) == ("guardian_request", erased_at, None)
