"""Training data and fitting of the watch model.

Task (ml.md §7.2): among students *not* in the high band at screening *t* (PHQ-9 < 15 and PHQ-9
item 9 = 0, i.e. no critical item), predict the high band at screening *t+1* (PHQ-9 >= 15 or
item 9 >= 1, which the rules raise as orange or red). Predictors: item scores at *t*, totals at
*t-1*, sex and school stage (:mod:`mh_platform.risk.features`). Never school, county or identity.

Model: ``StandardScaler`` -> :class:`NonNegativeLogisticRegression` (a ``LogisticRegression``
with non-negative coefficients on every symptom feature), wrapped in ``CalibratedClassifierCV``
(sigmoid, ``StratifiedGroupKFold`` by school, ``ensemble=True``). No resampling, no class weights
(they distort calibration); the operating point is set by the workload policy instead.
``HistGradientBoostingClassifier`` appears only as a comparator in the evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mh_platform.risk.cohort import Cohort
from mh_platform.risk.estimators import NonNegativeLogisticRegression
from mh_platform.risk.features import FEATURE_NAMES, SYMPTOM_MASK, build_features
from mh_platform.risk.policy import DEFAULT_POLICY, WatchPolicy, in_high_band
from mh_platform.risk.quality import assess

DEFAULT_C = 1.0
N_SPLITS = 5


@dataclass(frozen=True)
class Dataset:
    """Eligible (student, screening t) rows with their outcome at t+1."""

    X: np.ndarray
    y: np.ndarray
    school: np.ndarray
    county: np.ndarray
    sex: np.ndarray
    stage: np.ndarray
    wave: np.ndarray           # t
    student: np.ndarray        # row index of the student in the cohort
    phq9_total: np.ndarray     # PHQ-9 total at t (the rule baseline score)
    latent: np.ndarray         # (n, 2) true depression and anxiety latents at t (oracle)
    quality_ok: np.ndarray     # no response-quality advice at t nor at t+1

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, mask: np.ndarray) -> Dataset:
        return Dataset(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def make_pairs(cohort: Cohort, starts: Sequence[int] | None = None,
               policy: WatchPolicy = DEFAULT_POLICY) -> Dataset:
    """Rows for transitions t -> t+1 for each t in ``starts`` (default: every wave but the last).

    ``quality_ok`` marks rows whose responses at t and t+1 got no quality advice (page time,
    non-zero longstring, lz misfit): the model is trained on those only, since a careless answer
    at t says little and a careless answer at t+1 is not a real outcome. Its rule flags still fire.
    """
    starts = list(range(len(cohort.waves) - 1)) if starts is None else list(starts)
    ok_cache: dict[int, np.ndarray] = {}

    def quality_ok(w: int) -> np.ndarray:
        if w not in ok_cache:
            wave = cohort.waves[w]
            ok_cache[w] = ~assess(wave.items, wave.seconds).advisory
        return ok_cache[w]

    parts = []
    for t in starts:
        if not 0 <= t < len(cohort.waves) - 1:
            raise ValueError(f"no transition from wave {t}")
        cur, nxt = cohort.waves[t], cohort.waves[t + 1]
        prev = cohort.waves[t - 1].items if t >= 1 else None
        eligible = ~in_high_band(cur.items["phq9"], policy)
        y = in_high_band(nxt.items["phq9"], policy).astype(np.int8)
        X = build_features(cur.items, prev, cohort.sex, cohort.stage)
        idx = np.flatnonzero(eligible)
        parts.append(dict(
            X=X[idx], y=y[idx], school=cohort.school[idx], county=cohort.county[idx], sex=cohort.sex[idx],
            stage=cohort.stage[idx], wave=np.full(idx.shape[0], t, dtype=np.int8), student=idx,
            phq9_total=cur.items["phq9"][idx].sum(axis=1).astype(float),
            latent=np.column_stack([cur.depression[idx], cur.anxiety[idx]]),
            quality_ok=(quality_ok(t) & quality_ok(t + 1))[idx]))
    return Dataset(**{k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


def make_model(seed: int = 0, C: float = DEFAULT_C) -> CalibratedClassifierCV:  # noqa: N803
    base = Pipeline([
        ("scale", StandardScaler()),
        ("logit", NonNegativeLogisticRegression(C=C, nonneg=tuple(bool(b) for b in SYMPTOM_MASK))),
    ])
    return CalibratedClassifierCV(base, method="sigmoid",
                                  cv=StratifiedGroupKFold(n_splits=N_SPLITS, shuffle=True, random_state=seed),
                                  ensemble=True)


def fit_model(X: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int = 0,  # noqa: N803
              C: float = DEFAULT_C) -> CalibratedClassifierCV:
    """Fit the calibrated watch model; calibration folds are grouped by school."""
    model = make_model(seed, C)
    with sklearn.config_context(enable_metadata_routing=True):
        model.fit(X, y, groups=groups)
    return model


def predict_proba(model: CalibratedClassifierCV, X: np.ndarray) -> np.ndarray:  # noqa: N803
    return model.predict_proba(X)[:, 1]


def choose_threshold(p: np.ndarray, target_flag_rate: float) -> float:
    """Probability threshold flagging about ``target_flag_rate`` of rows (rounded to 3 places, up)."""
    q = float(np.quantile(p, 1.0 - target_flag_rate))
    return float(np.ceil(q * 1000) / 1000)


@dataclass(frozen=True)
class TrainedModel:
    model: CalibratedClassifierCV
    threshold: float
    train_rows: int
    train_events: int
    train_students: int
    train_schools: int
    seed: int
    cohort_args: dict


def train(seed: int = 0, n_students: int = 20_000, n_schools: int | None = None, waves: int = 3,
          policy: WatchPolicy = DEFAULT_POLICY, C: float = DEFAULT_C) -> TrainedModel:  # noqa: N803
    """Generate a training cohort from ``seed`` and fit the watch model on all its transitions."""
    from mh_platform.risk.cohort import generate_cohort

    cohort_args = {"n_students": n_students, "seed": seed, "n_schools": n_schools, "waves": waves}
    cohort = generate_cohort(n_students, seed, n_schools=n_schools, waves=waves)
    ds = make_pairs(cohort)
    ds = ds.subset(ds.quality_ok)
    model = fit_model(ds.X, ds.y, ds.school, seed=seed, C=C)
    threshold = policy.threshold if policy.threshold is not None else \
        choose_threshold(predict_proba(model, ds.X), policy.target_flag_rate)
    return TrainedModel(model=model, threshold=threshold, train_rows=len(ds), train_events=int(ds.y.sum()),
                        train_students=cohort.n, train_schools=cohort.n_schools, seed=seed,
                        cohort_args=cohort_args)


def coefficient_table(model: CalibratedClassifierCV) -> dict[str, float]:
    """Mean raw-scale coefficient per feature over the calibration ensemble (for the model card)."""
    betas = []
    for cc in model.calibrated_classifiers_:
        pipe = cc.estimator
        scale = pipe.named_steps["scale"].scale_
        betas.append(pipe.named_steps["logit"].coef_[0] / scale)
    mean = np.mean(betas, axis=0)
    return {name: float(b) for name, b in zip(FEATURE_NAMES, mean, strict=True)}
