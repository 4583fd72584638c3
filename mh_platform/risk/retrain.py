"""Retraining job and human approval. Off by default; never swaps a model in by itself.

``retrain_candidate(...)`` fits a new watch model, evaluates it, and writes a *candidate* artifact
directory beside the existing ones (``models/risk-<UTC timestamp>``). It does not touch
``models/ACTIVE``, so the platform keeps using the approved model. The scheduler wiring (someone
else's job) calls it only when retraining is enabled in configuration (``enabled=True`` or the
environment variable ``MHP_RISK_RETRAIN_ENABLED=1``); otherwise it returns ``None`` at once.

``approve(dir, approved_by)`` is what ``mhp model approve DIR`` runs: it verifies the artifact
(hash, trusted types, version), requires its recorded evaluation to have passed every bar (or
re-runs the evaluation), and only then points ``models/ACTIVE`` at it, recording who approved
which hash, when, and which artifact it replaced.

Real accumulated data: pass a :class:`mh_platform.risk.train.Dataset` built by the services layer
from stored screenings (same features, outcome and eligibility as :func:`make_pairs`). Without
one, the candidate is trained on a synthetic cohort (useful to test the pipeline end to end).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mh_platform.risk.artifact import (
    CARD_FILE,
    ArtifactRefused,
    load_artifact,
    models_dir,
    read_manifest,
    save_artifact,
    write_active,
)
from mh_platform.risk.features import FEATURE_NAMES, SYMPTOM_MASK
from mh_platform.risk.policy import DEFAULT_POLICY, WatchPolicy

ENABLE_ENV = "MHP_RISK_RETRAIN_ENABLED"


def retrain_enabled(enabled: bool | None = None) -> bool:
    if enabled is not None:
        return enabled
    return os.environ.get(ENABLE_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def manifest_fields(trained: Any, evaluation: dict[str, Any] | None, policy: WatchPolicy,
                    data_source: str) -> dict[str, Any]:
    from mh_platform.risk.cohort import GENERATOR_VERSION, CohortParams
    from mh_platform.risk.train import coefficient_table

    fields: dict[str, Any] = {
        "status": "candidate",
        "task": "P(PHQ-9 >= 15 or PHQ-9 item 9 >= 1 at the next screening | PHQ-9 < 15 and item 9 = 0 now)",
        "estimator": "CalibratedClassifierCV(sigmoid, StratifiedGroupKFold(5) by school, ensemble) of "
                     "StandardScaler -> NonNegativeLogisticRegression(C=1.0)",
        "features": list(FEATURE_NAMES),
        "monotone_features": [n for n, m in zip(FEATURE_NAMES, SYMPTOM_MASK, strict=True) if m],
        "seed": trained.seed,
        "data_source": data_source,
        "generator": {"version": GENERATOR_VERSION, "params": CohortParams().__dict__, **trained.cohort_args},
        "train": {"rows": trained.train_rows, "events": trained.train_events, "students": trained.train_students,
                  "schools": trained.train_schools},
        "threshold": trained.threshold,
        "policy": policy.as_dict(),
        "coefficients_raw_scale": {k: round(v, 5) for k, v in coefficient_table(trained.model).items()},
    }
    if evaluation is not None:
        fields["metrics"] = evaluation
        fields["all_bars_passed"] = bool(evaluation.get("all_bars_passed"))
    return fields


def new_artifact_dir(base: str | os.PathLike | None = None, prefix: str = "risk") -> Path:
    root = Path(base or models_dir())
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    d = root / f"{prefix}-{stamp}"
    i = 1
    while d.exists():
        i += 1
        d = root / f"{prefix}-{stamp}-{i}"
    return d


def build_artifact(out_dir: str | os.PathLike, *, seed: int = 0, n_students: int = 20_000, n_eval: int = 20_000,
                   evaluate_bars: bool = True, dataset: Any = None, policy: WatchPolicy = DEFAULT_POLICY,
                   n_boot: int = 200) -> dict[str, Any]:
    """Train (synthetic cohort from ``seed``, or ``dataset``), evaluate, save into ``out_dir`` and
    write a draft ``MODEL_CARD.md`` from the manifest for a person to review."""
    from threadpoolctl import threadpool_limits

    from mh_platform.risk.evaluate import evaluate
    from mh_platform.risk.train import TrainedModel, choose_threshold, fit_model, predict_proba, train

    with threadpool_limits(limits=1):
        if dataset is None:
            trained = train(seed=seed, n_students=n_students, policy=policy)
            source = "synthetic cohort (mh_platform.risk.cohort)"
        else:
            ds = dataset.subset(dataset.quality_ok)
            model = fit_model(ds.X, ds.y, ds.school, seed=seed)
            thr = policy.threshold if policy.threshold is not None else \
                choose_threshold(predict_proba(model, ds.X), policy.target_flag_rate)
            trained = TrainedModel(model=model, threshold=thr, train_rows=len(ds), train_events=int(ds.y.sum()),
                                   train_students=int(len(set(ds.student.tolist()))),
                                   train_schools=int(len(set(ds.school.tolist()))), seed=seed,
                                   cohort_args={"dataset": "accumulated screenings"})
            source = "accumulated screenings"
        evaluation = evaluate(trained.model, trained.threshold, n_students=n_eval, seed=seed + 1,
                              n_boot=n_boot, policy=policy) if evaluate_bars else None
    manifest = save_artifact(trained.model, out_dir, manifest_fields(trained, evaluation, policy, source))
    from mh_platform.risk.card import render_model_card

    (Path(out_dir) / CARD_FILE).write_text(render_model_card(manifest), encoding="utf-8")
    return manifest


def retrain_candidate(dataset: Any = None, *, enabled: bool | None = None, base: str | os.PathLike | None = None,
                      seed: int = 0, n_students: int = 20_000, policy: WatchPolicy = DEFAULT_POLICY) -> Path | None:
    """The scheduler job: write a new candidate artifact beside the old ones, or do nothing when off.

    Returns the new directory, or None when retraining is disabled (the default).
    """
    if not retrain_enabled(enabled):
        return None
    out = new_artifact_dir(base)
    build_artifact(out, seed=seed, n_students=n_students, dataset=dataset, policy=policy)
    return out


def approve(artifact_dir: str | os.PathLike, approved_by: str, *, re_evaluate: bool = False,
            base: str | os.PathLike | None = None, n_eval: int = 20_000) -> dict[str, Any]:
    """Make ``artifact_dir`` the active model after a person reviewed its evaluation."""
    if not approved_by or not approved_by.strip():
        raise ArtifactRefused("approval needs the name of the person approving (--by)")
    loaded = load_artifact(artifact_dir)  # hash, trusted types, version
    manifest = read_manifest(artifact_dir)
    if re_evaluate or "metrics" not in manifest:
        from threadpoolctl import threadpool_limits

        from mh_platform.risk.evaluate import evaluate

        with threadpool_limits(limits=1):
            evaluation = evaluate(loaded.model, loaded.threshold, n_students=n_eval, seed=int(manifest.get("seed", 0)) + 7,
                                  n_boot=0)
    else:
        evaluation = manifest["metrics"]
    failed = [k for k, b in evaluation.get("bars", {}).items() if not b.get("passed")]
    if failed or not evaluation.get("all_bars_passed"):
        raise ArtifactRefused(f"{artifact_dir}: evaluation did not pass every bar ({', '.join(failed) or 'missing'}); "
                              "not approved")
    summary = {k: evaluation.get(k) for k in ("auc", "auc_total_score_baseline", "calibration_slope", "auc_gap_sex",
                                              "flag_rate", "all_bars_passed")}
    return write_active(artifact_dir, approved_by.strip(), summary, base=base)
