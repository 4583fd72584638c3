"""The synthetic cohort: determinism, structure, response behaviour and calibration targets."""

import time

import numpy as np
import pytest

from mh_platform.risk.cohort import (
    CARELESS_RANDOM,
    CARELESS_STRAIGHT,
    ITEM_RANGE,
    N_ITEMS,
    generate_cohort,
)
from mh_platform.risk.scores import engine_has, numpy_totals, totals
from mh_platform.risk.stats import TARGETS, cohort_stats


@pytest.fixture(scope="module")
def stats20k():
    # calibration is checked on 20,000 students, scored by the project's engine where it has the instrument
    return cohort_stats(20_000, seed=0)


def test_same_seed_same_cohort_and_other_seed_differs():
    a = generate_cohort(2000, seed=42, waves=2)
    b = generate_cohort(2000, seed=42, waves=2)
    c = generate_cohort(2000, seed=43, waves=2)
    for name in N_ITEMS:
        for w in range(2):
            assert np.array_equal(a.waves[w].items[name], b.waves[w].items[name])
            assert np.array_equal(a.waves[w].seconds[name], b.waves[w].seconds[name])
    assert np.array_equal(a.school, b.school)
    assert not np.array_equal(a.waves[0].items["phq9"], c.waves[0].items["phq9"])


def test_structure_and_item_ranges():
    c = generate_cohort(6000, seed=1, n_schools=30, n_counties=5, waves=3)
    assert c.n == 6000 and len(c.waves) == 3
    assert np.unique(c.student_id).size == c.n
    assert c.n_schools == 30 and set(np.unique(c.county)) == set(range(5))
    assert np.array_equal(c.county, c.school_county[c.school])
    assert set(np.unique(c.stage)) == {0, 1}
    assert np.all((c.grade >= 7) & (c.grade <= 12))
    assert np.all((c.grade >= 10) == (c.stage == 1))
    for w in c.waves:
        for name, k in N_ITEMS.items():
            m = w.items[name]
            lo, hi = ITEM_RANGE[name]
            assert m.shape == (c.n, k)
            assert m.min() >= lo and m.max() <= hi
            assert w.seconds[name].shape == (c.n, k) and np.all(w.seconds[name] > 0)
        k10 = w.items["k10"]  # skip logic: item 3 = 1 when item 2 = 1; item 6 = 1 when item 5 = 1
        assert np.all(k10[k10[:, 1] == 1, 2] == 1)
        assert np.all(k10[k10[:, 4] == 1, 5] == 1)


def test_careless_responders_are_injected_as_asked():
    c = generate_cohort(20_000, seed=3, careless_rate=0.09, straightline_share=1 / 3)
    w = c.waves[0]
    rnd, sl = w.careless == CARELESS_RANDOM, w.careless == CARELESS_STRAIGHT
    assert rnd.mean() == pytest.approx(0.06, abs=0.006)
    assert sl.mean() == pytest.approx(0.03, abs=0.004)
    battery = w.battery()
    # straight-liners give one non-zero option across the whole PHQ-9 + GAD-7 battery
    assert np.all(battery[sl].min(axis=1) == battery[sl].max(axis=1))
    assert np.all(battery[sl, 0] > 0)
    # careless answers are fast; attentive ones mostly are not
    sec = np.mean([w.seconds[n].mean(axis=1) for n in N_ITEMS], axis=0)
    assert np.median(sec[rnd]) < 2.0 < np.median(sec[w.careless == 0])
    none = generate_cohort(5000, seed=3, careless_rate=0.0)
    assert not none.waves[0].careless.any()


def test_latent_stability_about_0_6_and_correlated_latents():
    c = generate_cohort(30_000, seed=5, waves=2)
    d0, d1 = c.waves[0].depression, c.waves[1].depression
    assert np.corrcoef(d0, d1)[0, 1] == pytest.approx(0.6, abs=0.06)  # person AR(1) 0.6 plus the stable means
    assert np.corrcoef(d0, c.waves[0].anxiety)[0, 1] == pytest.approx(0.75, abs=0.05)


def test_wave_shift_moves_prevalence():
    base = generate_cohort(20_000, seed=6, waves=2)
    drift = generate_cohort(20_000, seed=6, waves=2, wave_shift=(0.0, 0.15))
    p0 = (base.waves[1].items["phq9"].sum(1) >= 10).mean()
    p1 = (drift.waves[1].items["phq9"].sum(1) >= 10).mean()
    assert 0.02 <= p1 - p0 <= 0.06
    assert np.array_equal(base.waves[0].items["phq9"], drift.waves[0].items["phq9"])


def test_totals_use_the_engine_and_agree_with_plain_sums():
    c = generate_cohort(3000, seed=7)
    for name in N_ITEMS:
        t = totals(name, c.waves[0].items[name])
        assert not np.isnan(t).any()
        assert np.array_equal(t, numpy_totals(name, c.waves[0].items[name]))
    assert engine_has("phq9") and engine_has("gad7")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_calibration_target_within_tolerance(stats20k, target):
    check = stats20k["checks"][target]
    lo, hi = check["tolerance"]
    assert check["passed"], f"{target}: {check['observed']} outside [{lo}, {hi}]"


def test_calibration_shape_checks(stats20k):
    prev = stats20k["prevalence"]
    assert prev["phq9_ge10"]["girls"] > prev["phq9_ge10"]["boys"]
    assert prev["gad7_ge10"]["girls"] > prev["gad7_ge10"]["boys"]
    assert prev["phq9_ge10"]["senior"] > prev["phq9_ge10"]["junior"]
    assert prev["gad7_ge10"]["senior"] > prev["gad7_ge10"]["junior"]
    assert stats20k["checks"]["phq9_item9_lowest_mean"]["passed"]
    for name in ("phq9", "gad7"):
        assert 0.84 <= stats20k["cronbach_alpha"][name] <= 0.90
        assert stats20k["scored_by"][name] == "core.scoring.score_many"
    # item 9: no sex difference (Hangzhou finding), positive rate plausible
    assert abs(prev["phq9_item9_positive"]["girls"] - prev["phq9_item9_positive"]["boys"]) < 0.02


def test_two_hundred_thousand_students_in_a_few_seconds():
    t0 = time.perf_counter()
    c = generate_cohort(200_000, seed=8, waves=2)
    elapsed = time.perf_counter() - t0
    assert c.n == 200_000
    assert elapsed < 20.0, f"{elapsed:.1f} s"  # about 2 s alone; generous for a shared 2-core machine
