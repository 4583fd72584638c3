"""Response-quality indices (ml.md §4): time, non-zero longstring, antonym pairs, polytomous lz."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mh_platform.core.instruments import load_instrument
from mh_platform.core.quality import (
    INTERVIEW_ADVISED,
    RE_ADMINISTER,
    GRMItem,
    Page,
    assess,
    grm_probs,
    lz_many,
    lz_one,
)
from mh_platform.core.scoring import score

PHQ9 = load_instrument("phq9")
GAD7 = load_instrument("gad7")
WHO5 = load_instrument("who5")
PARAMS9 = [GRMItem(a, (0.0 + s, 1.0 + s, 2.0 + s)) for a, s in
           zip([2.0, 2.2, 1.5, 1.8, 1.4, 2.0, 1.6, 1.5, 2.5], [0.0, 0.1, -0.2, -0.3, 0.0, 0.2, 0.1, 0.4, 0.9],
               strict=True)]


def _ans(values):
    return {str(i + 1): v for i, v in enumerate(values)}


def test_clean_battery_has_no_flag():
    pages = [Page(PHQ9, _ans([1, 0, 1, 1, 0, 0, 1, 0, 0]), seconds=40),
             Page(GAD7, _ans([1, 1, 0, 0, 0, 1, 0]), seconds=30),
             Page(WHO5, _ans([3, 3, 2, 2, 3]), seconds=20)]
    q = assess(pages, grm={"phq9": PARAMS9})
    assert q.ok and q.suggestion is None and q.flags == ()
    assert q.indices["longstring_nonzero"] == 2  # items 3-4 of the PHQ-9


def test_too_fast_page_suggests_re_administration_without_risk():
    q = assess([Page(PHQ9, _ans([0] * 9), seconds=9)])  # 1 s per item
    assert q.flags == ("too_fast",)
    assert q.suggestion == RE_ADMINISTER
    assert "作答过快" in q.note_zh and "too fast" in q.note_en
    assert q.indices["seconds_per_item"]["phq9"] == pytest.approx(1.0)


def test_quality_problem_with_a_critical_item_advises_interview_and_keeps_the_flag():
    answers = _ans([0, 0, 0, 0, 0, 0, 0, 0, 2])
    before = score(PHQ9, answers)
    q = assess([Page(PHQ9, answers, seconds=5, result=before)])
    assert q.suggestion == INTERVIEW_ADVISED and q.risk
    after = score(PHQ9, answers)
    assert after.to_json() == before.to_json() and after.critical == [9]  # nothing changed


def test_all_zero_is_not_a_longstring_but_nonzero_straight_lining_is():
    zeros = [Page(PHQ9, _ans([0] * 9)), Page(GAD7, _ans([0] * 7))]
    assert assess(zeros).indices["longstring_nonzero"] == 0
    twos = [Page(PHQ9, _ans([2] * 9)), Page(GAD7, _ans([2] * 7))]
    q = assess(twos)
    assert q.indices["longstring_nonzero"] == 16 and "longstring" in q.flags
    assert q.suggestion == INTERVIEW_ADVISED  # PHQ-9 18 and item 9 = 2: risk stands first
    broken = [Page(PHQ9, _ans([2, 2, 2, 2, 2, 1, 2, 2, 2])), Page(GAD7, _ans([2] * 7))]
    assert assess(broken).indices["longstring_nonzero"] == 10


def test_antonym_pairs_detect_contradiction():
    phq = _ans([3, 3, 3, 3, 0, 0, 0, 0, 0])
    who = _ans([5, 5, 5, 5, 5])  # cheerful, calm, active, rested, interested all the time
    q = assess([Page(PHQ9, phq), Page(WHO5, who)])
    assert q.indices["pairs_checked"] == 4 and q.indices["pairs_contradictory"] == 4
    assert "inconsistent" in q.flags
    ok = assess([Page(PHQ9, phq), Page(WHO5, _ans([0, 1, 0, 1, 0]))])
    assert ok.indices["pairs_contradictory"] == 0 and "inconsistent" not in ok.flags


def _lz_slow(x, items):
    """Direct transcription of the lz formula, with θ̂ from a fine grid EAP."""
    grid = np.linspace(-4, 4, 81)
    logpost = -0.5 * grid**2
    for xi, it in zip(x, items, strict=True):
        if xi is not None:
            logpost = logpost + np.log(grm_probs(grid, it)[:, xi])
    w = np.exp(logpost - logpost.max())
    theta = float((w * grid).sum() / w.sum())
    l0 = e = v = 0.0
    for xi, it in zip(x, items, strict=True):
        if xi is None:
            continue
        p = grm_probs(np.array([theta]), it)[0]
        l0 += math.log(p[xi])
        el = sum(pk * math.log(pk) for pk in p)
        e += el
        v += sum(pk * math.log(pk) ** 2 for pk in p) - el**2
    return (l0 - e) / math.sqrt(v)


def test_lz_matches_the_formula():
    x = [2, 0, 3, None, 1, 0, 3, 0, 2]
    assert lz_one(x, PARAMS9) == pytest.approx(_lz_slow(x, PARAMS9), abs=1e-9)


def test_lz_is_near_standard_normal_for_model_conform_responders_and_low_for_random_ones():
    rng = np.random.default_rng(11)
    n = 1500
    theta = rng.normal(size=n)
    X = np.empty((n, 9))
    for j, it in enumerate(PARAMS9):
        P = grm_probs(theta, it)
        u = rng.random(n)[:, None]
        X[:, j] = (u > np.cumsum(P, axis=1)).sum(axis=1)
    lz, th = lz_many(X, PARAMS9)
    assert abs(np.nanmean(lz)) < 0.35 and 0.6 < np.nanstd(lz) < 1.3
    assert np.corrcoef(th, theta)[0, 1] > 0.8
    R = rng.integers(0, 4, size=(n, 9)).astype(float)  # uniform random answering
    lz_r, _ = lz_many(R, PARAMS9)
    assert np.nanmean(lz_r) < np.nanmean(lz) - 1.0


def test_reversed_pattern_is_a_person_misfit():
    # endorses the rarest item (9) most and the commonest least: aberrant
    answers = _ans([0, 0, 0, 0, 0, 3, 3, 3, 3])
    q = assess([Page(PHQ9, answers)], grm={"phq9": PARAMS9})
    assert "person_misfit" in q.flags and q.indices["lz"]["phq9"] < -2
    assert q.suggestion == INTERVIEW_ADVISED  # item 9 = 3 is a risk signal


def test_lz_needs_enough_items_and_matching_parameters():
    q = assess([Page(PHQ9, _ans([1, 1, 0, None, None, None, None, None, None]))], grm={"phq9": PARAMS9})
    assert q.indices["lz"] == {}
    with pytest.raises(ValueError, match="item parameter"):
        assess([Page(PHQ9, _ans([0] * 9))], grm={"phq9": PARAMS9[:5]})
