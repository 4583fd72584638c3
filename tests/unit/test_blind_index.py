"""Blind indexes: normalisation per kind, keyed (never a plain hash), domain-separated, truncated."""

from __future__ import annotations

import hashlib
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mh_platform.crypto.blind_index import (
    BlindIndexer,
    IndexKind,
    InvalidIndexValue,
    id_number_checksum_ok,
    normalise,
)
from mh_platform.crypto.keyring import KeyPurpose, generate_data_key

ROOT = bytes(range(32))
IDX = BlindIndexer(ROOT)
VALID_ID = "11010519491231002X"  # the GB 11643 standard's example, check character X


def make_id(rng: random.Random) -> str:
    body = f"{rng.choice(['110105', '440304', '510107'])}{rng.randint(2008, 2015)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    "raw",
    [
        "11010519491231002X",
        "11010519491231002x",
        " 110105 19491231 002X ",
        "110105-19491231-002x",
        "１１０１０５１９４９１２３１００２ｘ",
    ],
)
def test_id_number_variants_normalise_together(raw: str) -> None:
    assert normalise(IndexKind.ID_NUMBER, raw) == VALID_ID
    assert IDX.compute(IndexKind.ID_NUMBER, raw) == IDX.compute(IndexKind.ID_NUMBER, VALID_ID)


@pytest.mark.parametrize(
    "raw", ["", "123", "11010519491231002Y", "1101051949123100XX", "110105194912310021234", "身份证"]
)
def test_bad_id_numbers_are_rejected_without_echoing(raw: str) -> None:
    with pytest.raises(InvalidIndexValue) as info:
        normalise(IndexKind.ID_NUMBER, raw)
    assert raw not in str(info.value) or not raw


def test_legacy_15_digit_id_accepted() -> None:
    assert normalise(IndexKind.ID_NUMBER, "110105 491231 002") == "110105491231002"


def test_id_checksum() -> None:
    assert id_number_checksum_ok(VALID_ID)
    assert not id_number_checksum_ok("110105194912310021")
    rng = random.Random(1)
    assert all(id_number_checksum_ok(make_id(rng)) for _ in range(200))


@pytest.mark.parametrize("raw", ["G11010519491231002x", "g 110105 19491231 002X", "Ｇ11010519491231002X"])
def test_student_number_normalisation(raw: str) -> None:
    assert normalise(IndexKind.STUDENT_NUMBER, raw) == "G11010519491231002X"


def test_bad_student_number() -> None:
    for raw in ["", "学籍号123", "A" * 33]:
        with pytest.raises(InvalidIndexValue):
            normalise(IndexKind.STUDENT_NUMBER, raw)


@pytest.mark.parametrize(
    "raw",
    [
        "13800138000",
        "138 0013 8000",
        "138-0013-8000",
        "+86 138 0013 8000",
        "+86-13800138000",
        "008613800138000",
        "8613800138000",
        "（138）0013 8000",
        "１３８００１３８０００",
    ],
)
def test_phone_variants_normalise_together(raw: str) -> None:
    assert normalise(IndexKind.PHONE, raw) == "13800138000"


def test_landline_and_foreign_numbers() -> None:
    assert normalise(IndexKind.PHONE, "010-6512 3456") == "01065123456"
    assert normalise(IndexKind.PHONE, "+44 20 7946 0958") == "+442079460958"
    assert normalise(IndexKind.PHONE, "+44 20 7946 0958") != normalise(IndexKind.PHONE, "2079460958")


@pytest.mark.parametrize("raw", ["", "abc", "138OO138OOO", "+", "1234", "1" * 16, "phone: 13800138000"])
def test_bad_phones(raw: str) -> None:
    with pytest.raises(InvalidIndexValue):
        normalise(IndexKind.PHONE, raw)


def test_non_string_rejected() -> None:
    for kind in IndexKind:
        with pytest.raises(InvalidIndexValue):
            normalise(kind, 13800138000)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- the index


def test_index_is_truncated_and_deterministic() -> None:
    a = IDX.compute(IndexKind.ID_NUMBER, VALID_ID)
    assert len(a) == 16
    assert a == BlindIndexer(ROOT).compute(IndexKind.ID_NUMBER, VALID_ID)
    assert len(BlindIndexer(ROOT, length=8).compute(IndexKind.ID_NUMBER, VALID_ID)) == 8


def test_length_bounds() -> None:
    for bad in (3, 33):
        with pytest.raises(ValueError, match="length"):
            BlindIndexer(ROOT, length=bad)
    with pytest.raises(ValueError, match="32 bytes"):
        BlindIndexer(b"short")


def test_index_is_keyed_not_a_plain_hash() -> None:
    """T5: recomputing an unkeyed hash of the normalised value matches nothing."""
    rng = random.Random(7)
    ids = {make_id(rng) for _ in range(1000)}
    indexes = {IDX.compute(IndexKind.ID_NUMBER, i) for i in ids}
    for i in ids:
        for h in (hashlib.sha256(i.encode()).digest(), hashlib.sha256(i.lower().encode()).digest()):
            assert h[:16] not in indexes
    other = BlindIndexer(os.urandom(32))
    assert not indexes & {other.compute(IndexKind.ID_NUMBER, i) for i in ids}


def test_domain_separation_by_kind_and_context() -> None:
    value = "13800138000"
    as_phone = IDX.compute(IndexKind.PHONE, value)
    as_student_no = IDX.compute(IndexKind.STUDENT_NUMBER, value)
    guardian = IDX.compute(IndexKind.PHONE, value, context="guardian.phone")
    teacher = IDX.compute(IndexKind.PHONE, value, context="staff.phone")
    assert len({as_phone, as_student_no, guardian, teacher}) == 4


def test_bad_context_rejected() -> None:
    with pytest.raises(ValueError, match="context"):
        IDX.compute(IndexKind.PHONE, "13800138000", context="Guardian Phone")


def test_lookup_recall_over_1000_students() -> None:
    rng = random.Random(42)
    ids = sorted({make_id(rng) for _ in range(1000)})
    table = {IDX.compute(IndexKind.ID_NUMBER, i): i for i in ids}
    assert len(table) == len(ids)  # no collisions at 16 bytes
    for i in ids:
        messy = f" {i[:6]} {i[6:14]}-{i[14:].lower()} "
        assert table[IDX.compute(IndexKind.ID_NUMBER, messy)] == i


def test_from_data_key_requires_blind_index_purpose() -> None:
    assert BlindIndexer.from_data_key(generate_data_key(KeyPurpose.BLIND_INDEX)).length == 16
    with pytest.raises(ValueError, match="blind_index"):
        BlindIndexer.from_data_key(generate_data_key(KeyPurpose.SYSTEM))


def test_from_master_material_differs_from_raw_master() -> None:
    assert BlindIndexer.from_master_material(ROOT).compute(IndexKind.PHONE, "13800138000") != IDX.compute(
        IndexKind.PHONE, "13800138000"
    )


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_normalise_never_raises_untyped(text: str) -> None:
    for kind in IndexKind:
        try:
            out = normalise(kind, text)
        except InvalidIndexValue:
            continue
        assert normalise(kind, out) == out  # idempotent


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=12), st.from_regex(r"[A-Za-z0-9 \-]{1,20}", fullmatch=True)), max_size=15))
def test_compute_many_is_compute_value_by_value(values: list[str]) -> None:
    want = []
    for v in values:
        try:
            want.append(IDX.compute(IndexKind.STUDENT_NUMBER, v))
        except InvalidIndexValue:
            want.append(None)
    assert IDX.compute_many(IndexKind.STUDENT_NUMBER, values) == want
    assert IDX.compute_many(IndexKind.PHONE, ["138 0013 8000"], context="guardian.phone") == \
        [IDX.compute(IndexKind.PHONE, "138 0013 8000", context="guardian.phone")]
