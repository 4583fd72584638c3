"""The AES-256-GCM field envelope: round trip, binding, tamper detection, nonces, keys, versions."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mh_platform.crypto import envelope as env
from mh_platform.crypto.envelope import (
    AAD,
    KeyShredded,
    Malformed,
    TamperedOrMisbound,
    UnknownKey,
    UnsupportedVersion,
    open_,
    open_text,
    parse_header,
    reseal,
    seal,
)
from mh_platform.crypto.keyring import (
    DataKey,
    KeyPurpose,
    Keyring,
    MasterKey,
    MasterKeySet,
    generate_data_key,
)

STUDENT = uuid.UUID("00000000-0000-4000-8000-000000000001")
ROW = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
OTHER_ROW = uuid.UUID("00000000-0000-4000-8000-0000000000bb")
KEY = generate_data_key(KeyPurpose.STUDENT, STUDENT)
HERE = AAD("concern", "note", ROW)


def lookup(key_id: uuid.UUID) -> DataKey | None:
    return KEY if key_id == KEY.key_id else None


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- round trip


@SETTINGS
@given(st.binary(max_size=4096))
def test_bytes_round_trip(data: bytes) -> None:
    assert open_(lookup, seal(KEY, data, HERE), HERE) == data


@SETTINGS
@given(st.text(max_size=2048), st.sampled_from([None, 16, 256]))
def test_text_round_trip_with_and_without_padding(text: str, pad_to: int | None) -> None:
    sealed = seal(KEY, text, HERE, pad_to=pad_to)
    assert open_text(lookup, sealed, HERE) == text
    assert open_(lookup, sealed, HERE) == text.encode("utf-8")


def test_large_value_round_trip() -> None:
    data = bytes(range(256)) * 256  # 64 KiB
    assert open_(lookup, seal(KEY, data, HERE), HERE) == data


def test_layout_and_header() -> None:
    sealed = seal(KEY, b"abc", HERE)
    assert sealed[0] == env.FORMAT_V1
    assert sealed[1:17] == KEY.key_id.bytes
    assert len(sealed) == 1 + 16 + 12 + 1 + 3 + 16
    assert parse_header(sealed) == (1, KEY.key_id)
    assert env.is_on_key(sealed, KEY.key_id)
    assert b"abc" not in sealed


def test_padding_hides_length_within_bucket() -> None:
    short = seal(KEY, "a", HERE, pad_to=256)
    long = seal(KEY, "a" * 200, HERE, pad_to=256)
    assert len(short) == len(long)
    assert len(seal(KEY, "a" * 300, HERE, pad_to=256)) > len(long)


def test_memoryview_from_driver_is_accepted() -> None:
    sealed = seal(KEY, "值", HERE)
    assert open_text(lookup, memoryview(sealed), HERE) == "值"


def test_bytes_value_is_not_returned_as_text() -> None:
    with pytest.raises(Malformed):
        open_text(lookup, seal(KEY, b"raw", HERE), HERE)


# --------------------------------------------------------------------------- binding (swap)


@pytest.mark.parametrize(
    "elsewhere",
    [
        AAD("concern", "note", OTHER_ROW),  # another row
        AAD("concern", "status_note", ROW),  # another column, same row
        AAD("case_note", "note", ROW),  # another table, same row id and column
        AAD("concernn", "ote", ROW),  # same concatenation, different split
    ],
    ids=["row", "column", "table", "split"],
)
def test_value_copied_elsewhere_is_refused(elsewhere: AAD) -> None:
    sealed = seal(KEY, "张三 has a plan", HERE)
    with pytest.raises(TamperedOrMisbound) as info:
        open_(lookup, sealed, elsewhere)
    assert "张三" not in str(info.value)
    assert info.value.aad == elsewhere


def test_aad_encoding_is_unambiguous() -> None:
    assert AAD("ab", "c", ROW).encode() != AAD("a", "bc", ROW).encode()


def test_aad_rejects_bad_parts() -> None:
    with pytest.raises(ValueError, match="table"):
        AAD("", "c", ROW)
    with pytest.raises(TypeError):
        AAD("t", "c", 5)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- tampering


@SETTINGS
@given(data=st.data(), plaintext=st.binary(max_size=256))
def test_any_flipped_bit_is_refused(data: st.DataObject, plaintext: bytes) -> None:
    sealed = bytearray(seal(KEY, plaintext, HERE))
    i = data.draw(st.integers(0, len(sealed) - 1), label="byte")
    mask = data.draw(st.integers(1, 255), label="mask")
    sealed[i] ^= mask
    with pytest.raises(env.EnvelopeError) as info:
        open_(lookup, bytes(sealed), HERE)
    if i == 0:
        assert isinstance(info.value, UnsupportedVersion)
    elif i < env.HEADER_LEN:
        assert isinstance(info.value, UnknownKey)
    else:
        assert isinstance(info.value, TamperedOrMisbound)


@SETTINGS
@given(data=st.data())
def test_truncated_or_extended_is_refused(data: st.DataObject) -> None:
    sealed = seal(KEY, b"some secret", HERE)
    cut = data.draw(st.integers(0, len(sealed) - 1))
    with pytest.raises((Malformed, TamperedOrMisbound)):
        open_(lookup, sealed[:cut], HERE)
    extra = data.draw(st.binary(min_size=1, max_size=32))
    with pytest.raises(TamperedOrMisbound):
        open_(lookup, sealed + extra, HERE)


@SETTINGS
@given(st.binary(max_size=128))
def test_arbitrary_bytes_give_only_typed_errors(junk: bytes) -> None:
    with pytest.raises(env.EnvelopeError):
        open_(lookup, junk, HERE)


def test_relabelled_key_id_is_refused_even_if_that_key_exists() -> None:
    """Header is authenticated: pointing the envelope at another known key fails, no fallback."""
    other = generate_data_key(KeyPurpose.STUDENT, STUDENT)
    keys = {KEY.key_id: KEY, other.key_id: other}
    sealed = seal(KEY, b"x", HERE)
    relabelled = sealed[:1] + other.key_id.bytes + sealed[17:]
    with pytest.raises(TamperedOrMisbound):
        open_(keys.get, relabelled, HERE)


def test_non_bytes_is_malformed() -> None:
    with pytest.raises(Malformed):
        open_(lookup, "not bytes", HERE)  # type: ignore[arg-type]
    with pytest.raises(Malformed):
        parse_header(b"")


# --------------------------------------------------------------------------- nonces


def test_nonces_unique_over_100k_seals() -> None:
    nonces = set()
    ciphertexts = set()
    for _ in range(100_000):
        sealed = seal(KEY, b"same plaintext", HERE)
        nonces.add(sealed[env.HEADER_LEN : env.HEADER_LEN + env.NONCE_LEN])
        ciphertexts.add(sealed)
    assert len(nonces) == 100_000
    assert len(ciphertexts) == 100_000


# --------------------------------------------------------------------------- keys and versions


def test_unknown_key_is_typed_and_carries_the_id() -> None:
    sealed = seal(KEY, b"x", HERE)
    with pytest.raises(UnknownKey) as info:
        open_(lambda _kid: None, sealed, HERE)
    assert info.value.key_id == KEY.key_id


def test_lookup_keyerror_is_unknown_key() -> None:
    with pytest.raises(UnknownKey):
        open_({}.__getitem__, seal(KEY, b"x", HERE), HERE)


def test_shredded_key_passes_through() -> None:
    def shredded(kid: uuid.UUID) -> DataKey | None:
        raise KeyShredded(kid)

    with pytest.raises(KeyShredded):
        open_(shredded, seal(KEY, b"x", HERE), HERE)


def test_lookup_returning_wrong_key_is_not_used() -> None:
    other = generate_data_key(KeyPurpose.STUDENT, STUDENT)
    with pytest.raises(UnknownKey):
        open_(lambda _kid: other, seal(KEY, b"x", HERE), HERE)


@pytest.mark.parametrize("version", [0, 2, 3, 0xFF])
def test_unsupported_version(version: int) -> None:
    sealed = seal(KEY, b"x", HERE)
    with pytest.raises(UnsupportedVersion) as info:
        open_(lookup, bytes([version]) + sealed[1:], HERE)
    assert info.value.version == version
    with pytest.raises(UnsupportedVersion):
        parse_header(bytes([version]) + sealed[1:])


@pytest.mark.parametrize("purpose", [KeyPurpose.BLIND_INDEX, KeyPurpose.AUDIT_MAC])
def test_non_field_keys_cannot_seal(purpose: KeyPurpose) -> None:
    with pytest.raises(ValueError, match="must not encrypt"):
        seal(generate_data_key(purpose), b"x", HERE)


def test_reseal_moves_value_to_new_key_with_fresh_nonce() -> None:
    new = generate_data_key(KeyPurpose.STUDENT, STUDENT)
    keys = {KEY.key_id: KEY, new.key_id: new}
    old = seal(KEY, "笔记", HERE)
    moved = reseal(keys.get, old, HERE, new)
    assert parse_header(moved).key_id == new.key_id
    assert open_text(keys.get, moved, HERE) == "笔记"
    assert moved[17:29] != old[17:29]


def test_keyring_is_a_key_lookup() -> None:
    ring = Keyring(MasterKeySet.single(MasterKey.generate()))
    key, _wrapped = ring.create_data_key(KeyPurpose.SYSTEM)
    assert open_(ring, seal(key, b"v", HERE), HERE) == b"v"


def test_key_row_that_fails_to_unwrap_is_an_envelope_error() -> None:
    """A tampered wrapped-key row or an unloaded master surfaces as UnknownKey, with the cause."""
    from dataclasses import replace

    from mh_platform.crypto.keyring import wrap_data_key

    master = MasterKey.generate()
    wrapped = wrap_data_key(KEY, master)
    broken = replace(wrapped, blob=wrapped.blob[:-1] + bytes([wrapped.blob[-1] ^ 1]))
    sealed = seal(KEY, b"x", HERE)
    for row, code in (
        (broken, "unwrap_failed"),
        (wrap_data_key(KEY, MasterKey.generate()), "unknown_master_key"),
    ):
        ring = Keyring(MasterKeySet.single(master), loader={KEY.key_id: row}.get)
        with pytest.raises(UnknownKey) as info:
            open_(ring, sealed, HERE)
        assert info.value.cause_code == code


# --------------------------------------------------------------------------- batches (bulk paths)


@SETTINGS
@given(st.lists(st.tuples(st.text(max_size=200), st.booleans()), max_size=20))
def test_seal_many_gives_the_envelopes_seal_gives(values: list[tuple[str, bool]]) -> None:
    other = generate_data_key(KeyPurpose.STUDENT, uuid.UUID("00000000-0000-4000-8000-000000000002"))
    keys = {KEY.key_id: KEY, other.key_id: other}
    rows = [uuid.uuid4() for _ in values]
    items = [(other if use_other else KEY, rid.bytes if i % 2 else rid, text)
             for i, ((text, use_other), rid) in enumerate(zip(values, rows, strict=True))]
    sealed = env.seal_many(items, table="response", column="answers_enc")
    assert len(sealed) == len(values)
    for (key, _rid, text), rid, out in zip(items, rows, sealed, strict=True):
        here = AAD("response", "answers_enc", rid)
        assert parse_header(out).key_id == key.key_id
        assert len(out) == len(seal(key, text, here))  # same layout as a single seal
        assert open_text(keys.get, out, here) == text
        with pytest.raises(TamperedOrMisbound):  # bound to its row and column like any envelope
            open_text(keys.get, out, AAD("response", "answers_enc", OTHER_ROW))
        with pytest.raises(TamperedOrMisbound):
            open_text(keys.get, out, AAD("response", "item_ms", rid))
    nonces = {out[17:29] for out in sealed}
    assert len(nonces) == len(sealed)  # a fresh nonce per value


def test_seal_many_refuses_what_seal_refuses() -> None:
    bidx = DataKey(uuid.uuid4(), b"k" * 32, KeyPurpose.BLIND_INDEX)
    with pytest.raises(ValueError, match="must not encrypt fields"):
        env.seal_many([(bidx, ROW, "x")], table="response", column="answers_enc")
    with pytest.raises(TypeError):
        env.seal_many([(KEY, b"short", "x")], table="response", column="answers_enc")
    with pytest.raises(TypeError):
        env.seal_many([(KEY, ROW, b"bytes")], table="response", column="answers_enc")  # type: ignore[list-item]
    with pytest.raises(ValueError, match="AAD table"):
        env.seal_many([(KEY, ROW, "x")], table="", column="answers_enc")
    assert env.seal_many([], table="response", column="answers_enc") == []
