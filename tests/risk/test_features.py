"""Score history -> feature vector."""

import numpy as np

from mh_platform.risk.features import (
    FEATURE_MAX,
    FEATURE_NAMES,
    SYMPTOM_MASK,
    build_features,
    feature_label,
    feature_vector,
)

CUR = {"phq9": [1, 2, 0, 3, 1, 0, 2, 0, 0], "gad7": [0, 1, 1, 2, 0, 0, 1],
       "k10": [1, 2, 1, 3, 2, 1, 2, 3, 1, 1], "who5": [5, 4, 3, 2, 1]}
PREV = {"phq9": [0] * 9, "gad7": [1] * 7, "k10": [1] * 10, "who5": [5] * 5}


def test_names_and_masks_line_up_and_no_identity_fields():
    assert len(FEATURE_NAMES) == len(SYMPTOM_MASK) == len(FEATURE_MAX) == 38
    assert not any(w in n for n in FEATURE_NAMES for w in ("school", "county", "id", "name"))
    assert not SYMPTOM_MASK[FEATURE_NAMES.index("girl")]
    assert not SYMPTOM_MASK[FEATURE_NAMES.index("has_previous")]
    assert SYMPTOM_MASK[FEATURE_NAMES.index("phq9_item9")]


def test_orientation_higher_is_worse():
    x = feature_vector(CUR, PREV, girl=1, senior=0)
    f = dict(zip(FEATURE_NAMES, x, strict=True))
    assert f["phq9_item4"] == 3
    assert f["k10_item1"] == 0 and f["k10_item4"] == 2          # K10 1-5 -> 0-4
    assert f["who5_item1"] == 0 and f["who5_item5"] == 4         # WHO-5 reversed: 5 - answer
    assert f["prev_phq9_total"] == 0 and f["prev_gad7_total"] == 7
    assert f["prev_k10_total"] == 0 and f["prev_who5_deficit"] == 0
    assert f["has_previous"] == 1 and f["girl"] == 1 and f["senior"] == 0
    assert np.all(x <= FEATURE_MAX) and np.all(x >= 0)


def test_first_screening_has_no_previous_block():
    x = feature_vector(CUR, None, girl=0, senior=1)
    f = dict(zip(FEATURE_NAMES, x, strict=True))
    assert f["has_previous"] == 0 and f["prev_gad7_total"] == 0 and f["senior"] == 1


def test_missing_items_are_prorated_within_the_instrument():
    cur = dict(CUR)
    cur["phq9"] = [2, 2, None, 2, 2, 2, 2, 2, 2]
    f = dict(zip(FEATURE_NAMES, feature_vector(cur, None, girl=0, senior=0), strict=True))
    assert f["phq9_item3"] == 2.0
    cur["gad7"] = [None] * 7
    f = dict(zip(FEATURE_NAMES, feature_vector(cur, None, girl=0, senior=0), strict=True))
    assert all(f[f"gad7_item{j}"] == 0 for j in range(1, 8))


def test_vector_equals_matrix_row():
    rows = {k: np.array([v, v]) for k, v in CUR.items()}
    prev = {k: np.array([v, [np.nan] * len(v)], dtype=float) for k, v in PREV.items()}
    X = build_features(rows, prev, np.array([1, 0]), np.array([0, 1]))
    assert np.array_equal(X[0], feature_vector(CUR, PREV, girl=1, senior=0))
    assert X[1, FEATURE_NAMES.index("has_previous")] == 0
    assert X[1, FEATURE_NAMES.index("prev_gad7_total")] == 0


def test_labels_are_readable():
    assert feature_label("phq9_item4") == "PHQ-9 item 4 'tired or little energy'"
    assert "previous" in feature_label("prev_phq9_total")
