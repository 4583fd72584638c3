"""Bars of ml.md §7.3 on a held-out synthetic cohort, at test size.

A model is trained on one seeded cohort and evaluated by ``mh_platform.risk.evaluate.evaluate`` on
a fresh cohort from another seed (grouped CV by school, a drifted later wave, leave-one-county-out,
the PHQ-9 total, HGB and the latent oracle as comparators). The cohorts are smaller than the
20,000 students / 60+ schools of ``mhp model evaluate`` so that ``make test`` stays fast; every
bar keeps its threshold.
"""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from mh_platform.risk.evaluate import calibration_intercept, calibration_slope, evaluate, monotonicity
from mh_platform.risk.features import FEATURE_MAX, SYMPTOM_MASK
from mh_platform.risk.policy import DEFAULT_POLICY
from mh_platform.risk.train import predict_proba, train

N_TRAIN, N_EVAL, SCHOOLS = 8_000, 8_000, 40


@pytest.fixture(scope="module")
def trained():
    with threadpool_limits(limits=1):
        return train(seed=100, n_students=N_TRAIN, n_schools=SCHOOLS)


@pytest.fixture(scope="module")
def report(trained):
    with threadpool_limits(limits=1):
        return evaluate(trained.model, trained.threshold, n_students=N_EVAL, n_schools=SCHOOLS, seed=100, n_boot=0)


def test_calibration_helpers_on_known_cases():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.02, 0.6, 40_000)
    y = (rng.random(40_000) < p).astype(int)
    assert calibration_slope(y, p) == pytest.approx(1.0, abs=0.06)
    assert calibration_intercept(y, p) == pytest.approx(0.0, abs=0.05)
    from scipy.special import expit, logit
    assert calibration_slope(y, expit(2 * logit(p))) == pytest.approx(0.5, abs=0.04)  # over-confident


def test_held_out_cohort_is_fresh_and_large_enough(report):
    assert report["cohort"]["seed"] != 100
    assert report["cohort"]["schools"] == SCHOOLS
    assert report["held_out"]["events"] >= 500


def test_b2_not_worse_than_the_phq9_total(report):
    assert report["bars"]["B2"]["passed"], report["bars"]["B2"]
    assert report["auc"] >= report["auc_total_score_baseline"] - 0.005


def test_b3_auc_in_the_published_prospective_band(report):
    assert 0.65 <= report["auc"] <= 0.85


def test_b1_close_to_the_latent_oracle(report):
    cv = report["grouped_cv"]
    assert cv["auc"] >= cv["auc_oracle"] - 0.04


def test_b4_lr_about_as_good_as_hgb(report):
    cv = report["grouped_cv"]
    assert abs(cv["auc_hgb"] - cv["auc"]) <= 0.02


def test_b5_calibration_slopes(report):
    assert 0.9 <= report["grouped_cv"]["calibration_slope"] <= 1.1
    assert 0.8 <= report["calibration_slope"] <= 1.2  # committed model on a new cohort: external validation
    assert 0.8 <= report["temporal"]["calibration_slope"] <= 1.2
    assert 0.8 <= report["leave_one_county_out"]["calibration_slope"] <= 1.2


def test_b6_calibration_in_the_large(report):
    assert report["bars"]["B6"]["passed"], report["bars"]["B6"]


def test_b7_brier_skill(report):
    assert report["bars"]["B7"]["passed"], report["bars"]["B7"]


def test_b8_auc_gap_by_sex_and_stage(report):
    assert report["auc_gap_sex"] <= 0.05
    assert report["auc_gap_stage"] <= 0.05


def test_b9_error_rates_are_reported(report):
    sub = report["held_out"]["subgroups"]
    for g in ("sex:girls", "sex:boys"):
        assert sub[g]["tpr"] is not None and sub[g]["fpr"] is not None


def test_b10_flag_rate_within_the_cap(report):
    assert report["flag_rate"] <= DEFAULT_POLICY.flag_rate_cap


def test_b11_monotone_and_no_rule_flag_lost(report, trained):
    b11 = report["bars"]["B11"]["value"]
    assert b11["monotonicity"]["coefficients_non_negative"]
    assert b11["monotonicity"]["calibrators_increasing"]
    veto = b11["no_veto"]
    assert veto["rules"] == "core.flag_rules"
    assert veto["rule_flags"] > 0 and veto["rule_flags_kept_unchanged"] == veto["rule_flags"]
    assert veto["lowered_or_removed"] == 0 and veto["model_above_yellow"] == 0
    assert veto["agrees_with_core_merge"] == veto["students"]


def test_risk_non_decreasing_in_every_symptom_item_exhaustively(trained):
    rng = np.random.default_rng(1)
    n = 120
    X = np.zeros((n, len(SYMPTOM_MASK)))
    X[:, :31] = rng.integers(0, 4, (n, 31)).astype(float)
    X[:, :31] = np.minimum(X[:, :31], FEATURE_MAX[:31])
    X[:, 31:35] = rng.uniform(0, 1, (n, 4)) * FEATURE_MAX[31:35]
    X[:, 35:] = rng.integers(0, 2, (n, 3))
    base = predict_proba(trained.model, X)
    for j in np.flatnonzero(SYMPTOM_MASK):
        for step in (1.0, FEATURE_MAX[j]):
            up = X.copy()
            up[:, j] = np.minimum(up[:, j] + step, FEATURE_MAX[j])
            assert np.all(predict_proba(trained.model, up) >= base - 1e-12), j
    assert monotonicity(trained.model, X)["passed"]


def test_b12_b13_quality_bars(report):
    assert report["bars"]["B12"]["passed"] and report["bars"]["B13"]["passed"]


def test_b14_reliable_change_from_instrument_files(report):
    b14 = report["bars"]["B14"]["value"]
    assert 5 <= b14["phq9"]["value"] <= 7 and 4 <= b14["gad7"]["value"] <= 6
    assert b14["phq9"]["r"] >= 0.75 and b14["gad7"]["r"] >= 0.75


def test_every_bar_passed(report):
    failed = [k for k, b in report["bars"].items() if not b["passed"]]
    assert not failed, failed
