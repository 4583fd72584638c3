"""Keys over time: master rotation, data-key rotation + re-encryption, shredding, backup/restore."""

import random
import uuid

import pytest
import sqlalchemy as sa

from mh_platform.core.types import UnitKind
from mh_platform.crypto import envelope as env
from mh_platform.crypto import keyring as kr
from mh_platform.db.models import DataKey, Guardian, Student
from mh_platform.services import key_ops, students
from mh_platform.services.context import SYSTEM, build_context
from mh_platform.services.demo import chinese_name
from mh_platform.services.keys import bootstrap_keys
from mh_platform.services.org import add_unit


def seed_students(ctx, n=30):
    from datetime import date

    rng = random.Random(1)
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        city = add_unit(s, kind=UnitKind.CITY, name="市", code="c", parent=None, now=now)
        county = add_unit(s, kind=UnitKind.COUNTY, name="区", code="k", parent=city, now=now)
        school = add_unit(s, kind=UnitKind.SCHOOL, name="校", code="s", parent=county, now=now)
        grade = add_unit(s, kind=UnitKind.GRADE, name="七年级", code="g", parent=school, now=now, grade_level=7)
        cls = add_unit(s, kind=UnitKind.CLASS, name="1班", code="c1", parent=grade, now=now, grade_level=7)
        year = students.ensure_academic_year(s, "2026-2027", date(2026, 9, 1), date(2027, 7, 15))
        names = {}
        for i in range(n):
            name = chinese_name(rng, "F")
            st = students.add_student(ctx, s, name=name, sex="F", birth_year=2013, class_unit=cls, year=year,
                                      now=now, student_number=f"G{i:017d}",
                                      guardians=[students.GuardianIn("家长", "mother", f"1380000{i:04d}")])
            names[st.id] = name
        uow.commit()
    return names


def read_name(ctx, sid):
    with ctx.uow() as uow:
        st = uow.session.get(Student, sid)
        return ctx.keyring.open_field(uow.session, st.name_enc, table="student", column="name_enc", row_id=sid)


def test_master_rotation_rewraps_every_key(fresh_ctx):
    ctx = fresh_ctx
    names = seed_students(ctx, 10)
    # a copy of the key file with a new primary version
    import shutil

    path = ctx.settings.master_key_file + ".rot"
    shutil.copy(ctx.settings.master_key_file, path)
    new_id = kr.add_master_key_version(path)
    from dataclasses import replace

    ctx2 = build_context(replace(ctx.settings, master_key_file=path), clock=ctx.clock, engine=ctx.engine)
    bootstrap_keys(ctx2)
    res = key_ops.rotate_master(ctx2, SYSTEM)
    assert res["rewrapped"] >= 10
    with ctx2.uow() as uow:
        masters = set(uow.session.scalars(sa.select(DataKey.master_key_id).where(DataKey.wrapped.is_not(None))))
    assert masters == {new_id}
    assert all(read_name(ctx2, sid) == n for sid, n in names.items())
    assert key_ops.rotate_master(ctx2, SYSTEM)["rewrapped"] == 0


def test_reencrypt_resumes_and_second_run_is_empty(fresh_ctx):
    ctx = fresh_ctx
    names = seed_students(ctx, 25)
    key_ops.rotate_data_keys(ctx, SYSTEM)
    total = 0
    for _ in range(3):  # three runs stopped midway, like killed ones
        rep = key_ops.reencrypt(ctx, SYSTEM, batch=5, stop_after=5)
        total += rep.reencrypted
        assert all(read_name(ctx, sid) == n for sid, n in list(names.items())[:5])
    rest = key_ops.reencrypt(ctx, SYSTEM, batch=7)
    with ctx.uow() as uow:
        active = set(uow.session.scalars(sa.select(DataKey.id).where(DataKey.active.is_(True))))
    in_use = key_ops.keys_in_use(ctx)
    assert set(in_use) <= active
    assert total + rest.reencrypted == sum(in_use.values()) - 0  # every value moved exactly once
    assert key_ops.reencrypt(ctx, SYSTEM).reencrypted == 0
    assert all(read_name(ctx, sid) == n for sid, n in names.items())


def two_erasers(ctx):
    """Two named sysadmins (the requester and the approver of an erasure)."""
    from mh_platform.core.types import Role
    from mh_platform.db.models import User
    from mh_platform.services import auth

    out = []
    for name in ("t.eraser.a", "t.eraser.b"):
        auth.create_user(ctx, SYSTEM, username=name, password="correct horse 1", role=Role.SYSADMIN)
        with ctx.uow() as uow:
            out.append(auth.actor_for_user(uow.session, uow.session.scalar(sa.select(User).where(User.username == name))))
    return out


def test_shred_then_restore_older_backup_keeps_student_unreadable(fresh_ctx, tmp_path, monkeypatch):
    ctx = fresh_ctx
    from dataclasses import replace

    from flags_world import light_hashes

    light_hashes(monkeypatch)
    ctx.settings = replace(ctx.settings, erasure_ledger_file=str(tmp_path / "ledger.jsonl"))
    names = seed_students(ctx, 8)
    requester, approver = two_erasers(ctx)
    victim = next(iter(names))
    backup = tmp_path / "before.bak"
    key_ops.create_backup(ctx, str(backup))  # older backup still holds the victim's key
    req = key_ops.request_erasure(ctx, requester, victim, "guardian_request")
    assert read_name(ctx, victim) == names[victim]  # a request alone destroys nothing
    assert key_ops.approve_erasure(ctx, approver, req["request"])["destroyed_keys"] >= 1
    with pytest.raises(env.KeyShredded):
        read_name(ctx, victim)
    with ctx.uow() as uow:
        assert uow.session.get(Student, victim).student_number_bidx is None
        assert uow.session.scalar(sa.select(Guardian.phone_bidx).where(Guardian.student_id == victim)) is None
    key_ops.restore_backup(ctx, str(backup))
    with pytest.raises(env.KeyShredded):
        read_name(ctx, victim)
    with ctx.uow() as uow:  # the replayed ledger row keeps the reason code of the file's erasure.v1 line
        from mh_platform.db.models import ErasureLedger

        assert uow.session.scalar(sa.select(ErasureLedger.reason_code)
                                  .where(ErasureLedger.student_id == victim)) == "guardian_request"
    for sid, n in names.items():
        if sid != victim:
            assert read_name(ctx, sid) == n


def test_shred_unknown_student_is_not_found(ctx, monkeypatch):
    from flags_world import light_hashes

    from mh_platform.core.errors import NotFound

    light_hashes(monkeypatch)
    requester, _ = two_erasers(ctx)
    with pytest.raises(NotFound):
        key_ops.request_erasure(ctx, requester, uuid.uuid4(), "guardian_request")
    with pytest.raises(NotFound):
        key_ops.approve_erasure(ctx, requester, uuid.uuid4())
