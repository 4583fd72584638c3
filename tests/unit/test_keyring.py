"""Master-key loading (refusals), data-key wrapping, the keyring cache, master rotation, the
known-answer self-test and the per-student key lifecycle / crypto-shredding (crypto.shredding)."""

from __future__ import annotations

import base64
import json
import os
import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mh_platform.crypto import keyring as kr
from mh_platform.crypto import shredding as sh
from mh_platform.crypto.envelope import AAD, KeyShredded, open_, seal
from mh_platform.crypto.keyring import (
    KeyPurpose,
    Keyring,
    MasterKey,
    MasterKeyInsecure,
    MasterKeyMalformed,
    MasterKeyMissing,
    MasterKeySet,
    UnknownMasterKey,
    UnwrapFailed,
    WrongMasterKey,
    add_master_key_version,
    generate_data_key,
    generate_master_key_file,
    load_master_key_file,
    load_master_key_set,
    remove_master_key_version,
    rewrap,
    unwrap_data_key,
    wrap_data_key,
)

STUDENT = uuid.uuid4()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "master.json"
    generate_master_key_file(path)
    return path


# --------------------------------------------------------------------------- key file


def test_generated_file_is_0600_and_loads(key_file: Path) -> None:
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    keys = load_master_key_file(key_file)
    assert len(keys.keys) == 1
    assert keys.primary.key_id == keys.primary_id


def test_generate_refuses_to_overwrite(key_file: Path) -> None:
    before = key_file.read_bytes()
    with pytest.raises(kr.KeyringError, match="already exists"):
        generate_master_key_file(key_file)
    assert key_file.read_bytes() == before


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o666, 0o610, 0o601])
def test_group_or_world_accessible_file_is_refused(key_file: Path, mode: int) -> None:
    os.chmod(key_file, mode)
    with pytest.raises(MasterKeyInsecure, match="chmod 600"):
        load_master_key_file(key_file)


def test_owner_only_modes_are_accepted(key_file: Path) -> None:
    os.chmod(key_file, 0o400)
    assert load_master_key_file(key_file)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(MasterKeyMissing):
        load_master_key_file(tmp_path / "nope.json")


def test_directory_is_refused(tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(MasterKeyInsecure, match="regular file"):
        load_master_key_file(d)


def test_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(MasterKeyInsecure, match="regular file"):
        load_master_key_file(fifo)


def test_symlink_to_strict_file_is_accepted(key_file: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(key_file)
    assert load_master_key_file(link).primary_id == load_master_key_file(key_file).primary_id


def _write(path: Path, content: str | bytes) -> Path:
    data = content.encode() if isinstance(content, str) else content
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)
    return path


def _doc(key_file: Path) -> dict:
    return json.loads(key_file.read_text())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: "not json {",
        lambda d: b"\xff\xfe",
        lambda d: json.dumps([]),
        lambda d: json.dumps({**d, "format": "other"}),
        lambda d: json.dumps({**d, "version": 2}),
        lambda d: json.dumps({**d, "keys": {}}),
        lambda d: json.dumps({**d, "primary": "mk-absent"}),
        lambda d: json.dumps({**d, "keys": {k: {**v, "key": "***"} for k, v in d["keys"].items()}}),
        lambda d: json.dumps(
            {
                **d,
                "keys": {k: {**v, "key": base64.b64encode(b"short").decode()} for k, v in d["keys"].items()},
            }
        ),
        lambda d: json.dumps({**d, "keys": {k: {"key": v["key"]} for k, v in d["keys"].items()}}),
        lambda d: json.dumps({**d, "keys": {k: {**v, "kcv": "zz"} for k, v in d["keys"].items()}}),
        lambda d: json.dumps({**d, "keys": {"bad id!": next(iter(d["keys"].values()))}}),
    ],
    ids=[
        "not-json",
        "not-utf8",
        "not-object",
        "format",
        "version",
        "no-keys",
        "primary-absent",
        "bad-base64",
        "short-key",
        "no-kcv",
        "kcv-not-hex",
        "bad-key-id",
    ],
)
def test_malformed_file_is_refused(key_file: Path, mutate) -> None:
    _write(key_file, mutate(_doc(key_file)))
    with pytest.raises(MasterKeyMalformed):
        load_master_key_file(key_file)


def test_altered_key_in_file_fails_its_check_value(key_file: Path) -> None:
    doc = _doc(key_file)
    kid = doc["primary"]
    doc["keys"][kid]["key"] = base64.b64encode(os.urandom(32)).decode()
    _write(key_file, json.dumps(doc))
    with pytest.raises(WrongMasterKey):
        load_master_key_file(key_file)


def test_error_messages_never_contain_key_material(key_file: Path) -> None:
    doc = _doc(key_file)
    secret = next(iter(doc["keys"].values()))["key"]
    os.chmod(key_file, 0o644)
    with pytest.raises(MasterKeyInsecure) as info:
        load_master_key_file(key_file)
    assert secret not in str(info.value)
    keys = MasterKeySet.single(MasterKey.generate())
    assert base64.b64encode(keys.primary.material).decode() not in repr(keys)


# --------------------------------------------------------------------------- env and start-up


def test_env_key_loads() -> None:
    raw = os.urandom(32)
    keys = load_master_key_set({"MHP_MASTER_KEY": "mk-env:" + base64.b64encode(raw).decode()})
    assert keys.primary_id == "mk-env"
    assert keys.primary.material == raw


@pytest.mark.parametrize(
    "value", ["no-colon", "mk:***", "mk:" + base64.b64encode(b"x" * 16).decode(), ":abcd"]
)
def test_malformed_env_key_is_refused(value: str) -> None:
    with pytest.raises(MasterKeyMalformed):
        load_master_key_set({"MHP_MASTER_KEY": value})


def test_nothing_configured_is_refused() -> None:
    with pytest.raises(MasterKeyMissing):
        load_master_key_set({})


def test_env_and_file_together_is_refused(key_file: Path) -> None:
    value = "mk-env:" + base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(MasterKeyMalformed, match="not both"):
        load_master_key_set({"MHP_MASTER_KEY": value, "MHP_MASTER_KEY_FILE": str(key_file)})


def test_file_from_env_var(key_file: Path) -> None:
    assert load_master_key_set({"MHP_MASTER_KEY_FILE": str(key_file)}).primary_id


def test_wrong_master_key_is_refused_against_recorded_check_value(key_file: Path, tmp_path: Path) -> None:
    """The DB records each master's KCV; a different key under the same id is refused at start."""
    recorded = load_master_key_file(key_file).check_values()
    kid = next(iter(recorded))
    other = tmp_path / "other.json"
    generate_master_key_file(other, key_id=kid)  # same id, different bytes
    with pytest.raises(WrongMasterKey):
        load_master_key_set({}, path=other, expected_check_values=recorded)
    # the right key passes and nothing is new
    assert load_master_key_file(key_file).verify_check_values(recorded) == set()


def test_new_master_is_reported_for_recording(key_file: Path) -> None:
    keys = load_master_key_file(key_file)
    assert keys.verify_check_values({}) == {keys.primary_id}


def test_check_value_depends_on_key() -> None:
    a, b = MasterKey.generate("mk-a"), MasterKey.generate("mk-a")
    assert a.check_value() != b.check_value()
    assert len(a.check_value()) == 16


# --------------------------------------------------------------------------- wrapping


def test_wrap_unwrap_round_trip() -> None:
    master = MasterKey.generate()
    key = generate_data_key(KeyPurpose.STUDENT, STUDENT)
    wrapped = wrap_data_key(key, master)
    assert key.material not in wrapped.blob
    back = unwrap_data_key(wrapped, master)
    assert (back.key_id, back.material, back.purpose, back.owner_id) == (
        key.key_id,
        key.material,
        key.purpose,
        key.owner_id,
    )


def test_wrapped_key_bound_to_owner_and_purpose() -> None:
    from dataclasses import replace

    master = MasterKey.generate()
    wrapped = wrap_data_key(generate_data_key(KeyPurpose.STUDENT, STUDENT), master)
    for forged in (
        replace(wrapped, owner_id=uuid.uuid4()),
        replace(wrapped, purpose=KeyPurpose.SYSTEM, owner_id=None),
        replace(wrapped, key_id=uuid.uuid4()),
        replace(wrapped, blob=wrapped.blob[:-1] + bytes([wrapped.blob[-1] ^ 1])),
        replace(wrapped, blob=wrapped.blob[:10]),
    ):
        with pytest.raises(UnwrapFailed):
            unwrap_data_key(forged, master)


def test_unwrap_with_wrong_master_is_refused() -> None:
    m1 = MasterKey.generate("mk-one")
    m2 = MasterKey("mk-one", os.urandom(32))
    wrapped = wrap_data_key(generate_data_key(KeyPurpose.SYSTEM), m1)
    with pytest.raises(UnwrapFailed):
        unwrap_data_key(wrapped, m2)
    with pytest.raises(UnknownMasterKey):
        unwrap_data_key(wrapped, MasterKey.generate("mk-two"))


def test_unwrap_many_unwraps_like_unwrap_without_filling_the_cache() -> None:
    master = MasterKey.generate()
    ring = Keyring(MasterKeySet.single(master))
    keys = [generate_data_key(KeyPurpose.STUDENT, uuid.uuid4()) for _ in range(5)]
    wrapped = [wrap_data_key(k, master) for k in keys]
    cached = ring.unwrap(wrapped[0])  # already in the cache: handed back as is
    got = ring.unwrap_many(wrapped)
    assert got[0] is cached
    assert [(g.key_id, g.material, g.owner_id) for g in got] == [(k.key_id, k.material, k.owner_id) for k in keys]
    assert len(ring) == 1
    from dataclasses import replace

    with pytest.raises(UnwrapFailed):
        ring.unwrap_many([replace(wrapped[1], owner_id=uuid.uuid4())])


def test_student_key_needs_owner() -> None:
    with pytest.raises(ValueError, match="owner"):
        generate_data_key(KeyPurpose.STUDENT)


# --------------------------------------------------------------------------- rotation


def test_rewrap_moves_to_new_master_and_data_still_opens() -> None:
    old, new = MasterKey.generate(), MasterKey.generate()
    key = generate_data_key(KeyPurpose.STUDENT, STUDENT)
    wrapped = wrap_data_key(key, old)
    aad = AAD("student", "name", uuid.uuid4())
    sealed = seal(key, "李四", aad)

    rewrapped = rewrap(wrapped, old, new)
    assert rewrapped.master_key_id == new.key_id
    assert rewrapped.key_id == key.key_id
    assert rewrapped.blob != wrapped.blob
    with pytest.raises(UnknownMasterKey):
        unwrap_data_key(rewrapped, old)

    ring = Keyring(MasterKeySet.single(new), loader={key.key_id: rewrapped}.get)
    assert open_(ring, sealed, aad) == "李四".encode()


def test_key_file_rotation_end_to_end(key_file: Path) -> None:
    first = load_master_key_file(key_file)
    ring1 = Keyring(first)
    key, wrapped = ring1.create_data_key(KeyPurpose.STUDENT, STUDENT)

    new_id = add_master_key_version(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    both = load_master_key_file(key_file)
    assert both.primary_id == new_id
    assert set(both.keys) == {first.primary_id, new_id}

    ring2 = Keyring(both)
    assert ring2.needs_rewrap(wrapped)
    rewrapped = ring2.rewrap(wrapped)
    assert rewrapped.master_key_id == new_id
    assert ring2.rewrap(rewrapped) is rewrapped  # idempotent: second run does nothing

    remove_master_key_version(key_file, first.primary_id)
    only_new = load_master_key_file(key_file)
    assert set(only_new.keys) == {new_id}
    assert unwrap_data_key(rewrapped, only_new.primary).material == key.material
    with pytest.raises(UnknownMasterKey):
        Keyring(only_new).unwrap(wrapped)  # an old wrapping no longer opens
    with pytest.raises(kr.KeyringError, match="primary"):
        remove_master_key_version(key_file, new_id)


# --------------------------------------------------------------------------- keyring cache


def test_keyring_lookup_uses_loader_and_caches() -> None:
    masters = MasterKeySet.single(MasterKey.generate())
    key = generate_data_key(KeyPurpose.STUDENT, STUDENT)
    store = {key.key_id: wrap_data_key(key, masters.primary)}
    calls: list[uuid.UUID] = []

    def loader(kid: uuid.UUID):
        calls.append(kid)
        return store.get(kid)

    ring = Keyring(masters, loader, max_cached=2)
    assert ring.lookup(key.key_id).material == key.material  # type: ignore[union-attr]
    assert ring.lookup(key.key_id) is not None
    assert calls == [key.key_id]
    assert ring.lookup(uuid.uuid4()) is None
    ring.forget(key.key_id)
    del store[key.key_id]
    assert ring.lookup(key.key_id) is None  # shredded: gone once evicted


def test_keyring_cache_is_bounded() -> None:
    ring = Keyring(MasterKeySet.single(MasterKey.generate()), max_cached=3)
    ids = [ring.create_data_key(KeyPurpose.SYSTEM)[0].key_id for _ in range(5)]
    assert len(ring) == 3
    assert ring.lookup(ids[0]) is None
    assert ring.lookup(ids[-1]) is not None


def test_repr_hides_material() -> None:
    master = MasterKey.generate()
    key = generate_data_key(KeyPurpose.SYSTEM)
    assert master.material.hex() not in repr(master)
    assert "material" not in repr(master)
    assert "material" not in repr(key)
    assert "blob" not in repr(wrap_data_key(key, master))


# --------------------------------------------------------------------------- self-test


def test_known_answer_self_test_passes() -> None:
    from mh_platform.crypto import self_test

    self_test()


# --------------------------------------------------------------------------- per-student keys and shredding

NOW = datetime(2026, 11, 29, 9, 0, tzinfo=UTC)
OFFICER, APPROVER = uuid.uuid4(), uuid.uuid4()


def _ring_with_store() -> tuple[Keyring, dict[uuid.UUID, sh.StudentKey]]:
    store: dict[uuid.UUID, sh.StudentKey] = {}

    def loader(kid: uuid.UUID):
        row = store.get(kid)
        if row is None:
            return None
        if row.state is sh.KeyState.DESTROYED:
            raise KeyShredded(kid)
        return row.wrapped

    return Keyring(MasterKeySet.single(MasterKey.generate()), loader), store


def test_student_key_lifecycle_rotate_and_retire() -> None:
    ring, store = _ring_with_store()
    key1, row1 = sh.new_student_key(ring, STUDENT)
    assert (row1.version, row1.state, row1.student_id) == (1, sh.KeyState.ACTIVE, STUDENT)
    key2, row2, changed = sh.rotate_student_key(ring, [row1], STUDENT)
    assert row2.version == 2
    assert [c.state for c in changed] == [sh.KeyState.DECRYPT_ONLY]
    assert sh.active_key([changed[0], row2]) == row2
    retired, tomb = sh.retire_key(changed[0], erasure_id=uuid.uuid4(), now=NOW)
    assert retired.wrapped is None
    assert tomb.key_id == key1.key_id
    with pytest.raises(sh.ShreddingError, match="active"):
        sh.retire_key(row2, erasure_id=uuid.uuid4(), now=NOW)


def test_shred_makes_every_value_unreadable_and_needs_two_people() -> None:
    ring, store = _ring_with_store()
    key1, row1 = sh.new_student_key(ring, STUDENT)
    key2, row2, changed = sh.rotate_student_key(ring, [row1], STUDENT)
    rows = [*changed, row2]
    store.update({r.key_id: r for r in rows})
    aad1, aad2 = AAD("student", "name", uuid.uuid4()), AAD("case_note", "body", uuid.uuid4())
    old_value, new_value = seal(key1, "王五", aad1), seal(key2, "note", aad2)
    assert open_(ring, old_value, aad1) == "王五".encode()

    with pytest.raises(sh.ShreddingError, match="second person"):
        sh.plan_erasure(
            rows,
            student_id=STUDENT,
            now=NOW,
            requested_by=OFFICER,
            approved_by=OFFICER,
            reason_code="guardian_request",
        )
    with pytest.raises(sh.ShreddingError, match="code"):
        sh.plan_erasure(
            rows,
            student_id=STUDENT,
            now=NOW,
            requested_by=OFFICER,
            approved_by=APPROVER,
            reason_code="王五 asked",
        )
    record, destroyed, tombs = sh.plan_erasure(
        rows,
        student_id=STUDENT,
        now=NOW,
        requested_by=OFFICER,
        approved_by=APPROVER,
        reason_code="guardian_request",
    )
    assert set(record.key_ids) == {key1.key_id, key2.key_id}
    assert all(d.state is sh.KeyState.DESTROYED and d.wrapped is None for d in destroyed)
    assert {t.key_id for t in tombs} == set(record.key_ids)

    store.update({r.key_id: r for r in destroyed})
    ring.forget_many(record.key_ids)
    for sealed, aad in ((old_value, aad1), (new_value, aad2)):
        with pytest.raises(KeyShredded):
            open_(ring, sealed, aad)
    with pytest.raises(sh.ShreddingError, match="erased"):
        sh.rotate_student_key(ring, destroyed, STUDENT)


def test_ledger_round_trip_has_no_personal_data() -> None:
    ring, _ = _ring_with_store()
    _, row = sh.new_student_key(ring, STUDENT)
    record, _, _ = sh.plan_erasure(
        [row],
        student_id=STUDENT,
        now=NOW,
        requested_by=OFFICER,
        approved_by=APPROVER,
        reason_code="retention_expired",
    )
    line = json.dumps(record.to_ledger_dict(), sort_keys=True)
    assert sh.ErasureRecord.from_ledger_dict(json.loads(line)) == record
    with pytest.raises(sh.ShreddingError):
        sh.ErasureRecord.from_ledger_dict({"type": "erasure.v1", "student_id": "nope"})


def test_replay_ledger_after_restoring_an_older_backup() -> None:
    ring, _ = _ring_with_store()
    other_student = uuid.uuid4()
    _, erased_row = sh.new_student_key(ring, STUDENT)
    _, kept_row = sh.new_student_key(ring, other_student)
    backup = [erased_row, kept_row]  # B0 taken before the erasure
    record, _, _ = sh.plan_erasure(
        [erased_row],
        student_id=STUDENT,
        now=NOW,
        requested_by=OFFICER,
        approved_by=APPROVER,
        reason_code="erasure",
    )
    to_destroy = sh.replay_ledger([record], backup)
    assert [r.key_id for r in to_destroy] == [erased_row.key_id]
    assert sh.erased_students([record]) == {STUDENT}
    # idempotent: replaying onto already-destroyed rows changes nothing
    assert sh.replay_ledger([record], to_destroy + [kept_row]) == []


def test_student_key_row_invariants() -> None:
    ring, _ = _ring_with_store()
    _, row = sh.new_student_key(ring, STUDENT)
    with pytest.raises(sh.ShreddingError):
        sh.StudentKey(row.key_id, uuid.uuid4(), 1, sh.KeyState.ACTIVE, row.wrapped)  # another student
    with pytest.raises(sh.ShreddingError):
        sh.StudentKey(row.key_id, STUDENT, 1, sh.KeyState.DESTROYED, row.wrapped)
    with pytest.raises(sh.ShreddingError, match="aware"):
        sh.plan_erasure(
            [row],
            student_id=STUDENT,
            now=datetime(2026, 1, 1),  # noqa: DTZ001
            requested_by=OFFICER,
            approved_by=APPROVER,
            reason_code="x",
        )


def test_wrapped_key_accepts_driver_types_and_checks_fields() -> None:
    master = MasterKey.generate()
    key = generate_data_key(KeyPurpose.STUDENT, STUDENT)
    w = wrap_data_key(key, master)
    from_db = kr.WrappedDataKey(w.key_id, "student", w.owner_id, w.master_key_id, memoryview(w.blob))  # type: ignore[arg-type]
    assert from_db.purpose is KeyPurpose.STUDENT
    assert unwrap_data_key(from_db, master).material == key.material
    with pytest.raises(TypeError):
        kr.WrappedDataKey(w.key_id, w.purpose, str(STUDENT), w.master_key_id, w.blob)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nonsense"):
        kr.WrappedDataKey(w.key_id, "nonsense", w.owner_id, w.master_key_id, w.blob)  # type: ignore[arg-type]


def test_two_people_rule_needs_two_named_different_people() -> None:
    sh.require_two_people(OFFICER, APPROVER)
    for requester, approver in ((OFFICER, OFFICER), (None, APPROVER), (OFFICER, None), (None, None)):
        with pytest.raises(sh.ShreddingError, match="second person|two named people"):
            sh.require_two_people(requester, approver)


def test_reason_code_is_a_short_code_that_fits_the_ledger() -> None:
    assert sh.check_reason_code("guardian_request") == "guardian_request"
    assert sh.check_reason_code("a" * 32) == "a" * 32
    for bad in ("", "a" * 33, "Guardian", "家长要求", "guardian request", "x;drop"):
        with pytest.raises(sh.ShreddingError, match="code"):
            sh.check_reason_code(bad)


def test_erasure_request_is_open_for_seven_days_only() -> None:
    expires = sh.erasure_request_expires_at(NOW)
    assert expires - NOW == sh.ERASURE_REQUEST_TTL == timedelta(days=7)
    assert sh.erasure_request_open(expires, NOW)
    assert sh.erasure_request_open(expires, expires - timedelta(seconds=1))
    assert not sh.erasure_request_open(expires, expires)
    assert not sh.erasure_request_open(expires, expires + timedelta(days=30))
    with pytest.raises(sh.ShreddingError, match="aware"):
        sh.erasure_request_expires_at(NOW.replace(tzinfo=None))
    with pytest.raises(sh.ShreddingError, match="positive"):
        sh.erasure_request_expires_at(NOW, timedelta(0))
