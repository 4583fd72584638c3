"""The keyed hash chain: every tamper case caught, and the first bad entry reported."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from mh_platform.core.audit_chain import (
    GENESIS_SEQ,
    ChainError,
    ChainRecord,
    Checkpoint,
    Failure,
    SensitiveFieldInRecord,
    append,
    canonical_json,
    entry_mac,
    entry_ok,
    head,
    link,
    sign_checkpoint,
    verify,
    verify_checkpoint_signature,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def build(n: int, key: bytes = KEY) -> list[ChainRecord]:
    chain: list[ChainRecord] = []
    prev: ChainRecord | None = None
    for i in range(n):
        prev = append(
            prev,
            {
                "ts": f"2026-11-29T08:{i // 60 % 60:02d}:{i % 60:02d}+00:00",
                "actor": f"u-{i % 7}",
                "action": "flag.acknowledge" if i % 2 else "student.read",
                "object": f"obj-{i}",
                "details": {"field": "note", "purpose": "case_work", "n": i},
            },
            key,
        )
        chain.append(prev)
    return chain


CHAIN = build(200)


def test_clean_chain_verifies() -> None:
    report = verify(CHAIN, KEY, anchor=head(CHAIN[-1]))
    assert report.ok
    assert bool(report)
    assert report.checked == 200
    assert report.last_good == Checkpoint(200, CHAIN[-1].mac)
    assert "OK" in report.summary()


def test_empty_chain_is_ok_without_anchor() -> None:
    assert verify([], KEY).ok


def test_seq_starts_at_genesis_and_links() -> None:
    assert CHAIN[0].seq == GENESIS_SEQ
    assert CHAIN[0].prev_mac is None
    assert all(b.prev_mac == a.mac and b.seq == a.seq + 1 for a, b in zip(CHAIN, CHAIN[1:], strict=False))


# --------------------------------------------------------------------------- tamper cases


@pytest.mark.parametrize("k", [0, 1, 57, 199])
def test_edited_field_is_caught_at_that_entry(k: int) -> None:
    chain = list(CHAIN)
    chain[k] = replace(chain[k], data={**chain[k].data, "actor": "someone-else"})
    report = verify(chain, KEY)
    assert (report.ok, report.reason, report.index, report.seq) == (False, Failure.EDITED, k, k + 1)
    assert report.checked == k


def test_edited_nested_detail_and_mac_and_prev_mac_are_caught() -> None:
    for mutate in (
        lambda r: replace(r, data={**r.data, "details": {**r.data["details"], "purpose": "curiosity"}}),
        lambda r: replace(r, mac=bytes(32)),
        lambda r: replace(r, prev_mac=bytes(32)),
    ):
        chain = list(CHAIN)
        chain[10] = mutate(chain[10])
        report = verify(chain, KEY)
        assert (report.reason, report.index) == (Failure.EDITED, 10)


@pytest.mark.parametrize("k", [1, 50, 198])
def test_deleted_entry_is_caught(k: int) -> None:
    chain = CHAIN[:k] + CHAIN[k + 1 :]
    report = verify(chain, KEY)
    assert (report.reason, report.index, report.seq, report.expected_seq) == (
        Failure.DELETED,
        k,
        k + 2,
        k + 1,
    )


def test_deleted_genesis_is_caught() -> None:
    report = verify(CHAIN[1:], KEY)
    assert (report.reason, report.index, report.expected_seq) == (Failure.DELETED, 0, 1)


def test_several_deleted_entries_are_described() -> None:
    report = verify(CHAIN[:5] + CHAIN[9:], KEY)
    assert report.reason is Failure.DELETED
    assert "seqs 6..9" in report.detail


@pytest.mark.parametrize("k", [0, 3, 100, 198])
def test_swapped_neighbours_are_caught_as_reordered(k: int) -> None:
    chain = list(CHAIN)
    chain[k], chain[k + 1] = chain[k + 1], chain[k]
    report = verify(chain, KEY)
    assert (report.reason, report.index, report.seq, report.expected_seq) == (
        Failure.REORDERED,
        k,
        k + 2,
        k + 1,
    )


def test_entry_moved_far_is_reordered_at_first_displacement() -> None:
    chain = list(CHAIN)
    moved = chain.pop(20)
    chain.insert(150, moved)
    report = verify(chain, KEY)
    assert (report.reason, report.index) == (Failure.REORDERED, 20)


def test_duplicated_entry_is_caught() -> None:
    chain = CHAIN[:31] + [CHAIN[30]] + CHAIN[31:]
    report = verify(chain, KEY)
    assert (report.reason, report.index, report.seq) == (Failure.DUPLICATED, 31, 31)


@pytest.mark.parametrize("cut", [1, 50, 199, 200])
def test_truncated_tail_is_caught_only_with_the_anchor(cut: int) -> None:
    chain = CHAIN[:-cut]
    assert verify(chain, KEY).ok  # a pure chain cannot see it...
    report = verify(chain, KEY, anchor=head(CHAIN[-1]))  # ...the anchor can
    assert (report.reason, report.index, report.expected_seq) == (Failure.TRUNCATED, 200 - cut, 201 - cut)
    assert report.seq is None


def test_anchor_mismatch_catches_a_rewrite_by_a_key_holder() -> None:
    rewritten: list[ChainRecord] = []
    prev: ChainRecord | None = None
    for r in CHAIN:
        prev = append(prev, {**r.data, "actor": "rewriter"}, KEY)
        rewritten.append(prev)
    assert verify(rewritten, KEY).ok
    anchor = Checkpoint(120, CHAIN[119].mac)
    report = verify(rewritten, KEY, anchor=anchor)
    assert (report.reason, report.index, report.seq) == (Failure.ANCHOR_MISMATCH, 119, 120)


def test_forged_entry_without_the_key_is_caught() -> None:
    """An attacker recomputing links with plain SHA-256 (no MAC key) is caught at the forgery."""
    chain = list(CHAIN[:100])
    forged_data = {
        "ts": "2026-11-29T09:00:00+00:00",
        "actor": "u-1",
        "action": "x",
        "object": "o",
        "details": {},
    }
    content = json.dumps(
        {"prev_mac": chain[-1].mac.hex(), "record": {**forged_data, "seq": 101}}, sort_keys=True
    )
    chain.append(ChainRecord(101, forged_data, chain[-1].mac, hashlib.sha256(content.encode()).digest()))
    report = verify(chain, KEY)
    assert (report.reason, report.index) == (Failure.EDITED, 100)


def test_wrong_key_fails_at_genesis() -> None:
    assert (verify(CHAIN, OTHER_KEY).reason, verify(CHAIN, OTHER_KEY).index) == (Failure.EDITED, 0)


def test_bad_genesis() -> None:
    with_prev = append(Checkpoint(0, bytes(32)), {"a": 1}, KEY)  # seq 1 but chained to something
    report = verify([with_prev], KEY)
    assert (report.reason, report.index) == (Failure.BAD_GENESIS, 0)
    zero = ChainRecord(0, {}, None, bytes(32))
    assert verify([zero], KEY).reason is Failure.BAD_GENESIS


def test_spliced_chains_break_the_link() -> None:
    # a record with a valid MAC and the right seq, chained to something else
    spliced = CHAIN[:50] + [append(Checkpoint(50, bytes(32)), {"x": 1}, KEY)]
    report = verify(spliced, KEY)
    assert (report.reason, report.index) == (Failure.BROKEN_LINK, 50)


def test_malformed_record() -> None:
    chain = list(CHAIN[:3])
    chain[1] = replace(chain[1], mac=b"short")
    assert (verify(chain, KEY).reason, verify(chain, KEY).index) == (Failure.MALFORMED, 1)
    assert verify([CHAIN[0], "junk"], KEY).reason is Failure.MALFORMED  # type: ignore[list-item]


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_single_tamper_reports_a_bad_index_at_or_before_it(data: st.DataObject) -> None:
    chain = list(CHAIN[:40])
    k = data.draw(st.integers(0, 39), label="k")
    op = data.draw(st.sampled_from(["edit", "delete", "swap", "truncate"]), label="op")
    if op == "edit":
        chain[k] = replace(chain[k], data={**chain[k].data, "object": "forged"})
    elif op == "delete":
        del chain[k]
    elif op == "swap":
        j = min(k + 1, 39)
        if j == k:
            k = 38
            j = 39
        chain[k], chain[j] = chain[j], chain[k]
    else:
        chain = chain[:k]
    report = verify(chain, KEY, anchor=head(CHAIN[39]))
    assert not report.ok
    assert report.index == k
    assert report.checked == k


# --------------------------------------------------------------------------- segments and checkpoints


def test_segment_continues_from_checkpoint() -> None:
    start = head(CHAIN[99])
    assert verify(CHAIN[100:], KEY, start_after=start, anchor=head(CHAIN[-1])).ok
    report = verify(CHAIN[101:], KEY, start_after=start)
    assert (report.reason, report.index) == (Failure.DELETED, 0)
    report = verify(CHAIN[100:], KEY, start_after=head(CHAIN[98]))  # seq 100 expected, 101 found
    assert (report.reason, report.index, report.expected_seq) == (Failure.DELETED, 0, 100)


def test_segment_with_wrong_start_mac_breaks_link() -> None:
    report = verify(CHAIN[100:], KEY, start_after=Checkpoint(100, bytes(32)))
    assert (report.reason, report.index) == (Failure.BROKEN_LINK, 0)


def test_signed_checkpoint() -> None:
    sk = Ed25519PrivateKey.generate()
    cp = head(CHAIN[-1])
    sig = sign_checkpoint(cp, sk)
    assert verify_checkpoint_signature(cp, sig, sk.public_key())
    assert not verify_checkpoint_signature(Checkpoint(cp.seq - 1, cp.mac), sig, sk.public_key())
    assert not verify_checkpoint_signature(cp, sig, Ed25519PrivateKey.generate().public_key())


# --------------------------------------------------------------------------- link and canonical JSON


def test_link_is_hmac_over_canonical_json() -> None:
    record = {"seq": 1, "b": "二", "a": [1, True, None]}
    expected = hmac.new(
        KEY,
        b"mhp-audit-chain-v1\n" + '{"prev_mac":null,"record":{"a":[1,true,null],"b":"二","seq":1}}'.encode(),
        hashlib.sha256,
    ).digest()
    assert link(None, record, KEY) == expected
    assert link(None, {"a": [1, True, None], "seq": 1, "b": "二"}, KEY) == expected  # key order irrelevant


def test_seq_and_prev_mac_are_inside_the_mac() -> None:
    base = link(None, {"seq": 1, "a": 1}, KEY)
    assert link(None, {"seq": 2, "a": 1}, KEY) != base
    assert link(bytes(32), {"seq": 1, "a": 1}, KEY) != base


@pytest.mark.parametrize(
    "record",
    [
        {"a": 1},
        {"seq": 0},
        {"seq": True},
        {"seq": "1"},
        {"seq": 1, "mac": "x"},
        {"seq": 1, "prev_mac": "x"},
        {"seq": 1, "t": float("nan")},
        {"seq": 1, "t": b"bytes"},
        {"seq": 1, 3: "int key"},
        {"seq": 1, "when": __import__("datetime").datetime(2026, 1, 1)},
    ],
)
def test_link_rejects_bad_records(record: dict) -> None:
    with pytest.raises(ChainError):
        link(None, record, KEY)


def test_link_rejects_short_key_and_bad_prev() -> None:
    with pytest.raises(ChainError, match="32 bytes"):
        link(None, {"seq": 1}, b"short")
    with pytest.raises(ChainError, match="prev_mac"):
        link(b"x", {"seq": 1}, KEY)
    with pytest.raises(ChainError, match="seq"):
        append(None, {"seq": 5}, KEY)


@pytest.mark.parametrize("field", ["name", "id_number", "Phone", "note", "answers", "feedback"])
def test_sensitive_field_names_are_refused_anywhere(field: str) -> None:
    with pytest.raises(SensitiveFieldInRecord):
        link(None, {"seq": 1, field: "x"}, KEY)
    with pytest.raises(SensitiveFieldInRecord):
        link(None, {"seq": 1, "details": [{"ok": 1, field: "x"}]}, KEY)


def test_canonical_json_is_stable_and_utf8() -> None:
    assert canonical_json({"b": 1, "a": "张"}) == '{"a":"张","b":1}'.encode()


# --------------------------------------------------------------------------- pending entries


def test_entry_mac_is_the_documented_hmac_and_checks_only_the_same_content() -> None:
    data = {"at": "2026-11-29T08:00:00+00:00", "kind": "screening:response_submitted", "data": {"n": 1}}
    mac = entry_mac(data, KEY)
    want = hmac.new(KEY, b"mhp-audit-entry-v1\n" + canonical_json(data), hashlib.sha256).digest()
    assert mac == want
    assert entry_ok(data, mac, KEY)
    assert not entry_ok({**data, "kind": "user:deleted"}, mac, KEY)  # edited while pending
    assert not entry_ok(data, mac, OTHER_KEY)  # forged without the key
    assert not entry_ok(data, None, KEY) and not entry_ok(data, mac[:31], KEY)
    # an entry MAC is not a chain MAC: it cannot be replayed as a chained record's mac
    assert mac != link(None, {**data, "seq": 1}, KEY)


def test_entry_mac_refuses_chain_fields_and_sensitive_keys() -> None:
    for bad in ({"seq": 1}, {"mac": "x"}, {"prev_mac": None}):
        with pytest.raises(ChainError):
            entry_mac(bad, KEY)
    with pytest.raises(SensitiveFieldInRecord):
        entry_mac({"data": {"note": "x"}}, KEY)
    assert not entry_ok({"seq": 1}, bytes(32), KEY)


def test_macs_are_hmac_sha256_of_the_domain_and_canonical_json():
    """Independent recomputation with the cryptography library: the MACs are plain HMAC-SHA256 over
    the domain string and the canonical JSON, whatever HMAC implementation computes them."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import hmac as crypto_hmac

    from mh_platform.core import audit_chain as ac

    key = b"k" * 32
    data = {"at": "2026-11-29T10:00:00+00:00", "kind": "x:y", "data": {"b": 1, "a": [True, None, 1.5, "汉"]}}

    def ref(domain: bytes, content: object) -> bytes:
        h = crypto_hmac.HMAC(key, hashes.SHA256())
        h.update(domain + ac.canonical_json(content))
        return h.finalize()

    assert ac.entry_mac(data, key) == ref(ac._ENTRY_DOMAIN, data)
    assert ac.link(None, {"seq": 1, **data}, key) == ref(ac._DOMAIN, {"prev_mac": None, "record": {"seq": 1, **data}})
