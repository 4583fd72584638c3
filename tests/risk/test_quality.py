"""Response quality: rule indices, lz^p person fit, bars B12 and B13."""

import numpy as np
import pytest

from mh_platform.risk.cohort import generate_cohort
from mh_platform.risk.quality import (
    assess,
    irv,
    longstring,
    lz_source,
    lzp,
    nonzero_longstring,
    page_time_index,
    quality_bars,
)


def test_longstring_indices_on_known_rows():
    rows = np.array([[0] * 16, [2] * 16, [1, 1, 0, 1, 1, 1] + [0] * 10, [1, 2] * 8])
    assert longstring(rows).tolist() == [16, 16, 10, 1]
    assert nonzero_longstring(rows).tolist() == [0, 16, 3, 1]
    assert irv(rows)[0] == 0 and irv(rows)[3] == 0.5


def test_page_time_index_counts_fast_pages():
    secs = {"phq9": np.array([[1.0] * 9, [4.0] * 9]), "gad7": np.array([[1.5] * 7, [1.0] * 7])}
    assert page_time_index(secs).tolist() == [2, 1]


def test_lzp_flags_random_patterns_more_than_model_consistent_ones():
    rng = np.random.default_rng(0)
    consistent = np.array([[0] * 9, [1, 1, 1, 1, 1, 1, 1, 1, 0], [3, 3, 3, 3, 3, 3, 3, 3, 2]])
    odd = np.array([[3, 0, 0, 0, 0, 0, 0, 0, 3], [0, 3, 0, 3, 0, 3, 0, 3, 0]])
    assert lzp("phq9", odd).max() < lzp("phq9", consistent).min()
    assert np.isfinite(lzp("phq9", rng.integers(0, 4, (50, 9)))).all()
    assert lz_source() in {"core", "risk-local"}


@pytest.fixture(scope="module")
def bars():
    c = generate_cohort(12_000, seed=21)
    w = c.waves[0]
    return quality_bars(w.items, w.seconds, w.careless, seed=0)


def test_b12_lz_not_confounded_with_severity(bars):
    lz = bars["lzp"]
    assert abs(lz["spearman_with_severity"]) <= 0.3
    assert lz["severe_share_top5"] <= 2 * lz["severe_base_rate"]
    assert bars["B12"]


def test_b13_catches_random_and_straight_line_responders(bars):
    assert bars["n_random"] > 300 and bars["n_straight"] > 150
    assert bars["lzp"]["auc_random"] >= 0.85
    assert bars["nonzero_longstring_rule"]["caught_straight"] >= 0.95
    assert bars["nonzero_longstring_rule"]["flagged_attentive"] <= 0.005
    assert bars["B13"]


def test_isolation_forest_is_only_reported(bars):
    iso = bars["isolation_forest_exploratory"]
    assert set(iso) >= {"spearman_with_severity", "severe_share_top5", "auc_random"}


def test_quality_advice_never_touches_answers():
    c = generate_cohort(500, seed=2)
    w = c.waves[0]
    before = {k: v.copy() for k, v in w.items.items()}
    rep = assess(w.items, w.seconds)
    assert all(np.array_equal(before[k], w.items[k]) for k in before)
    assert rep.advisory.shape == (500,)


def test_lz_source_and_local_implementation_agree_with_core():
    from mh_platform.risk import quality as q

    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, (200, 9))
    local, theta_local = q._lzp_local(x, *q.GRM_PARAMS["phq9"])
    core = q._core_quality()
    if core is None:
        assert lz_source() == "risk-local"
        raw, theta = q._raw_lz("phq9", x)
        assert np.array_equal(raw, local)
    else:
        assert lz_source() == "core"
        raw, theta = q._raw_lz("phq9", x)
        assert np.allclose(raw, local, atol=1e-9) and np.allclose(theta, theta_local, atol=1e-9)
