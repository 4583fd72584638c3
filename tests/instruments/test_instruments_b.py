"""Instrument-specific checks for k10, scared, cesdc, cesd, psc17 and sdq.

The golden files hold worked examples; this file pins the structure each published rule depends on
(item lists, reverse keys, skip rules, band ids, text policy) and compares the engine with small,
independent re-implementations of the published scoring rules on random answer sets.
"""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from mh_platform.core.instruments import load_instrument
from mh_platform.core.scoring import score

OURS = ("k10", "scared", "cesdc", "cesd", "psc17", "sdq")


def half_up(x: Fraction) -> int:
    """floor(x + 1/2), exactly."""
    return int((x + Fraction(1, 2)).__floor__())


def _partition(inst, ids):
    items = [n for sid in ids for n in inst.subscale(sid).items]
    return sorted(items)


# --------------------------------------------------------------------------- structure


def test_k10_skip_rules_and_band_ids():
    k10 = load_instrument("k10")
    skips = {it.number: it.skip for it in k10.items if it.skip is not None}
    assert set(skips) == {3, 6}
    assert (skips[3].when.item, skips[3].when.values, skips[3].value) == (2, (1,), 1)
    assert (skips[6].when.item, skips[6].when.values, skips[6].value) == (5, (1,), 1)
    assert [b.id for b in k10.cutoff_set().bands] == ["likely_well", "mild", "moderate", "severe"]
    assert [(b.min, b.max) for b in k10.cutoff_set().bands] == [(10, 19), (20, 24), (25, 29), (30, 50)]
    assert k10.total_range("score_1_5") == (10, 50)
    assert k10.total_range("score_0_4") == (0, 40)
    k6 = k10.short_forms[0]
    assert k6.id == "k6" and sorted(k6.items) == [2, 4, 5, 8, 9, 10] and k6.positive_at == 13


def test_scared_subscales_partition_the_form():
    s = load_instrument("scared")
    ids = ["panic_somatic", "generalized_anxiety", "separation_anxiety", "social_anxiety", "school_avoidance"]
    assert _partition(s, ids) == list(range(1, 42))
    assert [len(s.subscale(i).items) for i in ids] == [13, 9, 8, 7, 4]
    assert [s.subscale(i).positive_at for i in ids] == [7, 9, 5, 8, 3]
    assert {c.id: c.bands[1].min for c in s.cutoff_sets} == {"wang_su_2002_china": 23, "birmaher_1999": 25}


def test_psc17_subscales_partition_the_form():
    p = load_instrument("psc17")
    assert p.subscale("internalizing").items == (2, 6, 9, 11, 15)
    assert p.subscale("attention").items == (1, 3, 7, 13, 17)
    assert p.subscale("externalizing").items == (4, 5, 8, 10, 12, 14, 16)
    assert _partition(p, ["internalizing", "attention", "externalizing"]) == list(range(1, 18))


@pytest.mark.parametrize("iid", ["cesdc", "cesd"])
def test_cesd_reverse_items(iid):
    inst = load_instrument(iid)
    assert [it.number for it in inst.items if it.reverse] == [4, 8, 12, 16]
    assert score(inst, {str(n): 0 for n in range(1, 21)}).total == 12
    assert score(inst, {str(n): 3 for n in range(1, 21)}).total == 48


def test_sdq_is_scoring_only_and_keyed_as_the_official_syntax():
    sdq = load_instrument("sdq")
    assert sdq.licence.ship_text is False
    assert all(not it.en and not it.zh for it in sdq.items)
    assert all(not o.en and not o.zh for it in sdq.items for o in it.options)
    assert [it.number for it in sdq.items if it.reverse] == [7, 11, 14, 21, 25]
    assert _partition(sdq, ["emotional", "conduct", "hyperactivity", "peer", "prosocial"]) == list(range(1, 26))
    assert sdq.subscale("emotional").items == (3, 8, 13, 16, 24)
    assert sdq.subscale("conduct").items == (5, 7, 12, 18, 22)
    assert sdq.subscale("hyperactivity").items == (2, 10, 15, 21, 25)
    assert sdq.subscale("peer").items == (6, 11, 14, 19, 23)
    assert sdq.subscale("prosocial").items == (1, 4, 9, 17, 20)


@pytest.mark.parametrize("iid", OURS)
def test_no_unverified_chinese_item_text(iid):
    """None of these files ships Chinese item text; each says why (translation.zh.status = none)."""
    inst = load_instrument(iid)
    assert inst.translation["zh"]["status"] == "none"
    assert inst.translation["zh"]["source"].startswith("Not shipped")
    assert all(not it.zh for it in inst.items)
    assert all(not o.zh for it in inst.items for o in it.options)
    assert inst.licence.copyright and inst.licence.citation and inst.licence.terms
    if inst.licence.ship_text:
        assert all(it.en for it in inst.items)


# --------------------------------------------------------------------------- independent re-implementations


def _k10_reference(ans: dict[int, int], offset: int = 0):
    """Andrews & Slade 2001 skip rule + ALSWH proration (≤2 missing); printed values 1–5,
    item score = printed value − offset (offset 1 for the 0–4 variant). K6 is always 0–4."""
    vals = {}
    for n in range(1, 11):
        if n in ans:
            vals[n] = ans[n]
        elif (n == 3 and ans.get(2) == 1) or (n == 6 and ans.get(5) == 1):
            vals[n] = 1  # skipped, scored as 'none of the time'
    if 10 - len(vals) > 2:
        total = None
    else:
        total = half_up(Fraction(sum(v - offset for v in vals.values()) * 10, len(vals)))
    k6_items = (2, 4, 5, 8, 9, 10)
    k6 = sum(ans[n] - 1 for n in k6_items) if all(n in ans for n in k6_items) else None
    return total, k6


@pytest.mark.parametrize("variant", [None, "score_0_4"])
def test_k10_matches_reference_on_random_forms(variant):
    k10 = load_instrument("k10")
    rng = random.Random(20261129)
    for _ in range(3000):
        ans = {n: rng.choice([1, 1, 1, 2, 3, 4, 5]) for n in range(1, 11)}
        for n in rng.sample(range(1, 11), rng.choice([0, 0, 0, 1, 2, 3])):
            del ans[n]
        if ans.get(2) == 1 and rng.random() < 0.8:
            ans.pop(3, None)
        if ans.get(5) == 1 and rng.random() < 0.8:
            ans.pop(6, None)
        want_total, want_k6 = _k10_reference(ans, offset=1 if variant else 0)
        r = score(k10, {str(k): v for k, v in ans.items()}, variant=variant)
        assert r.total == want_total, (ans, r)
        assert r.short_forms["k6"][0] == want_k6, (ans, r)


def _sdq_reference(ans: dict[int, int]):
    """Official SDQ syntax: subscale = mean of ≥3 answered items × 5, rounded half up."""
    sdq = load_instrument("sdq")
    rev = {7, 11, 14, 21, 25}
    out = {}
    for sid in ("emotional", "conduct", "hyperactivity", "peer", "prosocial"):
        items = sdq.subscale(sid).items
        got = [(2 - ans[n]) if n in rev else ans[n] for n in items if n in ans]
        out[sid] = half_up(Fraction(sum(got) * 5, len(got))) if len(got) >= 3 else None
    parts = [out[s] for s in ("emotional", "conduct", "hyperactivity", "peer")]
    out["total"] = None if any(p is None for p in parts) else sum(parts)
    return out


def test_sdq_matches_official_syntax_on_random_forms():
    sdq = load_instrument("sdq")
    rng = random.Random(7)
    for _ in range(3000):
        ans = {n: rng.choice([0, 1, 2]) for n in range(1, 26)}
        for n in rng.sample(range(1, 26), rng.choice([0, 0, 1, 2, 3, 5, 8])):
            del ans[n]
        want = _sdq_reference(ans)
        r = score(sdq, {str(k): v for k, v in ans.items()})
        assert r.total == want["total"], (ans, r)
        for sid in ("emotional", "conduct", "hyperactivity", "peer", "prosocial"):
            assert r.subscales[sid].score == want[sid], (sid, ans, r)


def _prorated(values: list[int], n_items: int, max_missing: int):
    if n_items - len(values) > max_missing:
        return None
    return half_up(Fraction(sum(values) * n_items, len(values)))


def test_scared_matches_reference_on_random_forms():
    s = load_instrument("scared")
    rng = random.Random(11)
    subs = {x.id: x.items for x in s.subscales}
    for _ in range(2000):
        ans = {n: rng.choice([0, 0, 1, 2]) for n in range(1, 42)}
        for n in rng.sample(range(1, 42), rng.choice([0, 0, 1, 2, 3])):
            del ans[n]
        r = score(s, {str(k): v for k, v in ans.items()})
        assert r.total == _prorated(list(ans.values()), 41, 2), (ans, r)
        for sid, items in subs.items():
            want = _prorated([ans[n] for n in items if n in ans], len(items), 1)
            assert r.subscales[sid].score == want, (sid, ans, r)


def test_psc17_total_is_the_sum_of_prorated_subscales():
    p = load_instrument("psc17")
    rng = random.Random(5)
    for _ in range(2000):
        ans = {n: rng.choice([0, 0, 1, 2]) for n in range(1, 18)}
        for n in rng.sample(range(1, 18), rng.choice([0, 0, 1, 2, 3])):
            del ans[n]
        subs = {x.id: _prorated([ans[n] for n in x.items if n in ans], len(x.items), 1) for x in p.subscales}
        r = score(p, {str(k): v for k, v in ans.items()})
        want = None if any(v is None for v in subs.values()) else sum(subs.values())
        assert r.total == want, (ans, r)


# --------------------------------------------------------------------------- open engine questions


def test_sdq_status_complete_when_only_prosocial_is_missing():
    sdq = load_instrument("sdq")
    ans = {str(n): 0 for n in range(1, 26)}
    for n in (7, 11, 14, 21, 25, 17, 20):
        ans[str(n)] = 2
    for n in (1, 4, 9):
        del ans[str(n)]
    r = score(sdq, ans)
    assert r.total == 0
    assert r.status == "complete"
