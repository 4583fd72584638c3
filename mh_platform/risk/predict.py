"""The watch signal for one student (or many): load the approved model once, predict, explain.

``watch_signal(features)`` returns a :class:`WatchSignal` with the calibrated probability, the
items that contributed most (for the counsellor's view only) and whether it is over the policy
threshold. Students already in the high band (PHQ-9 >= 15 or item 9 >= 1) are outside the model's
task: the rules flag them, so their signal is never over the threshold. The signal enters the flag
system only through :func:`mh_platform.risk.policy.combine` (or core ``flag_rules.model_evidence``
via :meth:`WatchSignal.to_flag_signal`), at most yellow.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mh_platform.risk.artifact import LoadedArtifact, load_active, load_artifact
from mh_platform.risk.features import FEATURE_NAMES, N_ITEM_FEATURES, SYMPTOM_MASK, feature_label
from mh_platform.risk.policy import DEFAULT_POLICY, WatchPolicy


@dataclass(frozen=True)
class TopItem:
    feature: str
    label: str
    value: float
    contribution: float   # log-odds contribution vs the training mean


@dataclass(frozen=True)
class WatchSignal:
    probability: float
    top_items: tuple[TopItem, ...]
    over_threshold: bool
    threshold: float
    eligible: bool = True
    model_version: str = ""

    def to_flag_signal(self) -> Any:
        """The core flag rules' ``WatchSignal`` (watch, probability, model_version)."""
        from mh_platform.core.flag_rules import WatchSignal as CoreWatchSignal

        return CoreWatchSignal(watch=self.over_threshold, probability=self.probability,
                               model_version=self.model_version)


class WatchModel:
    """A loaded, verified artifact with its threshold; thread-safe for prediction."""

    def __init__(self, artifact: LoadedArtifact, policy: WatchPolicy = DEFAULT_POLICY) -> None:
        names = tuple(artifact.manifest.get("features", ()))
        if names != FEATURE_NAMES:
            raise ValueError("artifact features do not match this code's FEATURE_NAMES; retrain")
        self.artifact = artifact
        self.model = artifact.model
        self.policy = policy
        self.threshold = policy.threshold if policy.threshold is not None else artifact.threshold
        self.version = artifact.version
        members = []
        for cc in self.model.calibrated_classifiers_:
            pipe = cc.estimator
            sc = pipe.named_steps["scale"]
            members.append((sc.mean_, sc.scale_, pipe.named_steps["logit"].coef_[0]))
        self._members = members

    def probabilities(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return self.model.predict_proba(np.atleast_2d(np.asarray(X, dtype=float)))[:, 1]

    def eligible(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        X = np.atleast_2d(X)
        phq = X[:, :9]
        return (phq.sum(axis=1) < self.policy.high_band_phq9_total) & (phq[:, 8] < self.policy.critical_item_min)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Log-odds contribution of each feature vs the training mean, averaged over the ensemble."""
        return np.mean([coef * (x - mean) / scale for mean, scale, coef in self._members], axis=0)

    def signal(self, features: np.ndarray) -> WatchSignal:
        x = np.asarray(features, dtype=float).reshape(-1)
        if x.shape[0] != len(FEATURE_NAMES):
            raise ValueError(f"expected {len(FEATURE_NAMES)} features, got {x.shape[0]}")
        p = float(self.probabilities(x[None, :])[0])
        ok = bool(self.eligible(x[None, :])[0])
        contrib = self.contributions(x)
        order = [j for j in np.argsort(-contrib) if SYMPTOM_MASK[j] and contrib[j] > 0]
        items_first = [j for j in order if j < N_ITEM_FEATURES] + [j for j in order if j >= N_ITEM_FEATURES]
        top = tuple(TopItem(FEATURE_NAMES[j], feature_label(FEATURE_NAMES[j]), float(x[j]), round(float(contrib[j]), 4))
                    for j in items_first[: self.policy.top_items])
        return WatchSignal(probability=p, top_items=top, over_threshold=ok and p >= self.threshold,
                           threshold=self.threshold, eligible=ok, model_version=self.version)


_lock = threading.Lock()
_loaded: WatchModel | None = None


def get_model(path: str | Path | None = None) -> WatchModel:
    """The approved model (``models/ACTIVE``), loaded and verified once per process.

    With ``path``, that artifact directory is loaded instead (verified against its manifest) and
    not cached.
    """
    global _loaded
    if path is not None:
        return WatchModel(load_artifact(path))
    with _lock:
        if _loaded is None:
            _loaded = WatchModel(load_active())
        return _loaded


def reset_cache() -> None:
    global _loaded
    with _lock:
        _loaded = None


def watch_signal(features: np.ndarray, model: WatchModel | None = None) -> WatchSignal:
    """Watch signal for one feature vector (see :func:`mh_platform.risk.features.feature_vector`)."""
    return (model or get_model()).signal(features)
