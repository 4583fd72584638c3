"""Reliable change and reliable deterioration on re-screening (ml.md §3, Jacobson & Truax)."""

from __future__ import annotations

import pytest

from mh_platform.core.instruments import load_instrument
from mh_platform.core.scoring import reliable_change, score

PHQ9 = load_instrument("phq9")
WHO5 = load_instrument("who5")


def _phq(total: int):
    vals = [0] * 9
    for i in range(total):  # fill items 1..8 first, never item 9
        vals[i % 8] += 1
    return score(PHQ9, {str(i + 1): v for i, v in enumerate(vals)})


@pytest.mark.parametrize(("before", "after", "reliable", "deterioration"), [
    (4, 10, True, True),     # +6, minimal -> moderate
    (10, 14, False, False),  # +4 < 6
    (15, 21, True, True),    # +6, moderately severe -> severe
    (20, 24, False, False),  # +4
    (14, 9, False, False),   # improvement is not deterioration
])
def test_phq9(before, after, reliable, deterioration):
    r = reliable_change(PHQ9, _phq(before), _phq(after))
    assert r["delta"] == after - before
    assert (r["reliable"], r["deterioration"]) == (reliable, deterioration)


def test_no_band_crossing_is_not_deterioration():
    a = score(PHQ9, {"1": 3, "2": 3, "3": 3, "4": 3, "5": 3, "6": 3, "7": 2, "8": 0, "9": 0})  # 20
    b = score(PHQ9, {"1": 3, "2": 3, "3": 3, "4": 3, "5": 3, "6": 3, "7": 3, "8": 3, "9": 2})  # 26
    r = reliable_change(PHQ9, a, b)
    assert r["reliable"] and not r["deterioration"]


def test_who5_lower_is_worse_and_percentage_scale():
    good = {"1": 4, "2": 4, "3": 4, "4": 4, "5": 4}  # 20 adequate
    poor = {"1": 2, "2": 2, "3": 2, "4": 2, "5": 2}  # 10 poor
    r = reliable_change(WHO5, score(WHO5, good), score(WHO5, poor))
    assert r["delta"] == -10 and r["reliable"] and r["deterioration"]
    rp = reliable_change(WHO5, score(WHO5, good, variant="percentage"), score(WHO5, poor, variant="percentage"))
    assert rp["delta"] == -40 and rp["threshold"] == 12 and rp["deterioration"]
    assert not reliable_change(WHO5, score(WHO5, poor), score(WHO5, good))["reliable"]


def test_invalid_side_and_mismatched_scales():
    assert reliable_change(PHQ9, score(PHQ9, {}), _phq(20))["reliable"] is False
    with pytest.raises(ValueError, match="same variant"):
        reliable_change(PHQ9, _phq(3), score(PHQ9, {"1": 0}, cutoff_set="tsai2014"))
