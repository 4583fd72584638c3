"""Score history -> feature vector for the watch model. Pure numpy, no scikit-learn.

Every symptom feature is oriented so that *higher means worse* (K10 shifted to 0-4, WHO-5
reversed to a 0-5 deficit), which lets the model enforce "risk non-decreasing in every symptom
item" as non-negative coefficients.

Features, in order (``FEATURE_NAMES``):

* current wave: PHQ-9 items 1-9, GAD-7 items 1-7, K10 items 1-10 (0-4), WHO-5 items 1-5
  (5 - answer);
* previous wave (if any): PHQ-9, GAD-7, K10 (0-40) and WHO-5 deficit totals, and a 0/1
  ``has_previous`` indicator (totals are 0 when there is no previous wave);
* ``girl`` (0/1) and ``senior`` (0/1). Never a school, county or identity field.

Missing data: a missing item (NaN) is replaced by the mean of the student's answered items of the
same instrument in that wave (prorating, as the scoring rules do); if the whole instrument is
missing, by 0 (no symptom) and, for the previous wave, ``has_previous`` reflects whether PHQ-9 was
answered. This only affects the watch probability, never a rule flag.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

CURRENT_INSTRUMENTS: tuple[tuple[str, int, int, bool], ...] = (
    # name, number of items, value subtracted (offset), reversed (value = top - x)
    ("phq9", 9, 0, False),
    ("gad7", 7, 0, False),
    ("k10", 10, 1, False),
    ("who5", 5, 0, True),
)
_TOP = {"who5": 5}

ITEM_LABELS: dict[str, tuple[str, ...]] = {
    "phq9": ("little interest or pleasure", "feeling down or hopeless", "sleep problems",
             "tired or little energy", "appetite", "feeling bad about yourself", "trouble concentrating",
             "moving slowly or restless", "thoughts of self-harm"),
    "gad7": ("nervous or on edge", "cannot stop worrying", "worrying too much", "trouble relaxing",
             "restless", "easily annoyed", "afraid something awful might happen"),
    "k10": ("tired out", "nervous", "so nervous nothing could calm you", "hopeless", "restless or fidgety",
            "so restless you could not sit still", "depressed", "everything an effort",
            "so sad nothing could cheer you up", "worthless"),
    "who5": ("not cheerful", "not calm or relaxed", "not active or vigorous", "not waking fresh",
             "daily life not interesting"),
}

PREVIOUS_FEATURES: tuple[str, ...] = ("prev_phq9_total", "prev_gad7_total", "prev_k10_total",
                                      "prev_who5_deficit", "has_previous")
DEMOGRAPHIC_FEATURES: tuple[str, ...] = ("girl", "senior")

FEATURE_NAMES: tuple[str, ...] = (
    *(f"{name}_item{j + 1}" for name, k, _, _ in CURRENT_INSTRUMENTS for j in range(k)),
    *PREVIOUS_FEATURES,
    *DEMOGRAPHIC_FEATURES,
)
N_ITEM_FEATURES = sum(k for _, k, _, _ in CURRENT_INSTRUMENTS)
# symptom features: all current items and the previous totals (not the indicator, not demographics)
SYMPTOM_MASK: np.ndarray = np.array(
    [True] * N_ITEM_FEATURES + [True, True, True, True, False] + [False] * len(DEMOGRAPHIC_FEATURES))
# value range of each symptom feature (used by the monotonicity check)
FEATURE_MAX: np.ndarray = np.array(
    [3] * 9 + [3] * 7 + [4] * 10 + [5] * 5 + [27, 21, 40, 25, 1, 1, 1], dtype=float)


def feature_label(name: str) -> str:
    """Readable label of a feature name, e.g. ``phq9_item4`` -> ``PHQ-9 item 4 'tired or little energy'``."""
    for inst, labels in ITEM_LABELS.items():
        prefix = f"{inst}_item"
        if name.startswith(prefix):
            j = int(name[len(prefix):]) - 1
            pretty = {"phq9": "PHQ-9", "gad7": "GAD-7", "k10": "K10", "who5": "WHO-5"}[inst]
            return f"{pretty} item {j + 1} '{labels[j]}'"
    return {"prev_phq9_total": "PHQ-9 total at the previous screening",
            "prev_gad7_total": "GAD-7 total at the previous screening",
            "prev_k10_total": "K10 total at the previous screening",
            "prev_who5_deficit": "low well-being (WHO-5) at the previous screening"}.get(name, name)


def _oriented(name: str, matrix: np.ndarray, k: int, offset: int, reverse: bool) -> np.ndarray:
    x = np.asarray(matrix, dtype=float).reshape(-1, k)
    x = x - offset
    if reverse:
        x = _TOP[name] - x
    # prorate missing items with the row mean of answered items; all missing -> 0
    miss = np.isnan(x)
    if miss.any():
        with np.errstate(invalid="ignore"):
            answered = (~miss).sum(axis=1, keepdims=True)
            row_mean = np.where(answered > 0, np.nansum(x, axis=1, keepdims=True) / np.maximum(answered, 1), 0.0)
        x = np.where(miss, row_mean, x)
    return x


def _current_block(items: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    cols = []
    for name, k, offset, reverse in CURRENT_INSTRUMENTS:
        m = items.get(name)
        if m is None:
            cols.append(np.zeros((n, k)))
        else:
            cols.append(_oriented(name, m, k, offset, reverse))
    return np.concatenate(cols, axis=1)


def build_features(current: Mapping[str, np.ndarray], previous: Mapping[str, np.ndarray] | None,
                   girl: np.ndarray, senior: np.ndarray) -> np.ndarray:
    """Feature matrix (n, len(FEATURE_NAMES)) from item matrices of the current and previous wave.

    ``current`` and ``previous`` map instrument name -> (n, k) item scores as answered (NaN for a
    missing item); ``previous`` may be None (first screening) or contain NaN rows for students
    without a previous screening.
    """
    girl = np.asarray(girl, dtype=float).reshape(-1)
    n = girl.shape[0]
    cur = _current_block(current, n)
    prev_tot = np.zeros((n, 4))
    has_prev = np.zeros((n, 1))
    if previous is not None:
        blk = _current_block(previous, n)
        edges = np.cumsum([0] + [k for _, k, _, _ in CURRENT_INSTRUMENTS])
        prev_tot = np.stack([blk[:, edges[i]:edges[i + 1]].sum(axis=1) for i in range(4)], axis=1)
        phq_prev = previous.get("phq9")
        if phq_prev is not None:
            has_prev[:, 0] = (~np.all(np.isnan(np.asarray(phq_prev, dtype=float)), axis=1)).astype(float)
            prev_tot = prev_tot * has_prev
    demo = np.column_stack([girl, np.asarray(senior, dtype=float).reshape(-1)])
    return np.concatenate([cur, prev_tot, has_prev, demo], axis=1)


def feature_vector(current: Mapping[str, object], previous: Mapping[str, object] | None = None, *,
                   girl: int | bool, senior: int | bool) -> np.ndarray:
    """One student's feature vector from lists of item scores (``None`` for a missing item)."""

    def as_rows(m: Mapping[str, object] | None) -> dict[str, np.ndarray] | None:
        if m is None:
            return None
        return {k: np.asarray([np.nan if v is None else v for v in vals], dtype=np.float64)[None, :]  # type: ignore[attr-defined]
                for k, vals in m.items()}

    return build_features(as_rows(current) or {}, as_rows(previous), np.array([int(girl)]),
                          np.array([int(senior)]))[0]
