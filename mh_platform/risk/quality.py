"""Response-quality assistance: rule indices, polytomous lz person-fit, an exploratory IsolationForest.

Output is advice for the counsellor ("re-administer or interview advised"), never a decision. A
quality flag never suppresses, lowers or delays a risk flag; critical-item and band flags fire
regardless (ml.md §4.3).

* **Rules** (fixed thresholds, not quantiles): page-time index -- pages (instruments) answered
  faster than 2 s per item on average (Huang et al. 2012); non-zero longstring -- a run of >= 12
  identical *non-zero* answers across the PHQ-9 + GAD-7 battery (plain longstring would flag the
  healthy all-zero students).
* **Person fit**: polytomous lz (lz^p, Drasgow et al. 1985) under the graded-response model at the
  EAP latent; low values = aberrant pattern. ``lz < -2.33`` (after standardisation) is the advisory
  cut-off. The raw lz comes from the core engine (``mh_platform.core.quality.lz_many``) when it is
  there, otherwise from the identical local implementation below (see :func:`lz_source`). Item parameters default to
  the synthetic generator's; for real data they should be refitted on the city's own responses.
* **IsolationForest**: exploratory only, fitted on paradata and index features (seconds per item,
  page-time index, longstrings, IRV, lz), never on raw answers, and audited for confounding with
  severity (bar B12). It flags nothing by itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from mh_platform.risk.cohort import GAD_A, GAD_B, PHQ_A, PHQ_B, category_probs

FAST_SECONDS_PER_ITEM = 2.0
FAST_PAGES_MIN = 2           # flagged "too fast" when at least this many pages are fast
NONZERO_LONGSTRING_MIN = 12  # over the 16-item PHQ-9 + GAD-7 battery
LZ_CUTOFF = -2.33            # one-sided 1 %

GRID = np.linspace(-4.0, 4.0, 81)
PRIOR = np.exp(-GRID ** 2 / 2)
GRM_PARAMS: dict[str, tuple[np.ndarray, np.ndarray]] = {"phq9": (PHQ_A, PHQ_B), "gad7": (GAD_A, GAD_B)}


def _core_quality() -> Any | None:
    """The core engine's quality module if it provides ``lz_many`` and ``GRMItem``, else None."""
    try:
        mod = importlib.import_module("mh_platform.core.quality")
    except Exception:  # noqa: BLE001 - absent or not importable: use the local implementation
        return None
    return mod if hasattr(mod, "lz_many") and hasattr(mod, "GRMItem") else None


def lz_source() -> str:
    """Which lz implementation is in use: ``core`` (``core.quality.lz_many``) or ``risk-local``."""
    return "core" if _core_quality() is not None else "risk-local"


def longstring(battery: np.ndarray) -> np.ndarray:
    """Longest run of identical answers per row."""
    x = np.asarray(battery)
    best = np.ones(x.shape[0], dtype=np.int16)
    cur = np.ones(x.shape[0], dtype=np.int16)
    for j in range(1, x.shape[1]):
        cur = np.where(x[:, j] == x[:, j - 1], cur + 1, 1).astype(np.int16)
        best = np.maximum(best, cur)
    return best


def nonzero_longstring(battery: np.ndarray) -> np.ndarray:
    """Longest run of identical *non-zero* answers per row (0 answers break and do not count)."""
    x = np.asarray(battery)
    cur = (x[:, 0] > 0).astype(np.int16)
    best = cur.copy()
    for j in range(1, x.shape[1]):
        v = x[:, j]
        cur = np.where(v > 0, np.where(v == x[:, j - 1], cur + 1, 1), 0).astype(np.int16)
        best = np.maximum(best, cur)
    return best


def irv(battery: np.ndarray) -> np.ndarray:
    """Intra-individual response variability (within-person SD)."""
    return np.asarray(battery, dtype=float).std(axis=1)


def page_time_index(seconds: Mapping[str, np.ndarray]) -> np.ndarray:
    """Number of pages (instruments) answered faster than 2 s per item on average."""
    pages = [np.asarray(s, dtype=float).mean(axis=1) < FAST_SECONDS_PER_ITEM for s in seconds.values()]
    return np.sum(pages, axis=0).astype(np.int16)


def _lzp_local(x: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lz^p, EAP latent) of each row of item scores ``x`` under the GRM (a, b).

    Same definition as ``core.quality.lz_many`` (81-point grid, standard-normal prior, EAP); used
    when the core module is not available, and checked against it in the tests when it is.
    """
    x = np.asarray(x, dtype=np.int64)
    log_p = np.log(np.clip(category_probs(GRID, a, b), 1e-12, 1.0))           # (grid, k, K)
    ll = np.zeros((GRID.shape[0], x.shape[0]))
    for j in range(x.shape[1]):
        ll += log_p[:, j, x[:, j]]
    post = np.exp(ll - ll.max(axis=0)) * PRIOR[:, None]
    theta = (post * GRID[:, None]).sum(axis=0) / post.sum(axis=0)          # EAP
    p = np.clip(category_probs(theta, a, b), 1e-12, 1.0)                    # (n, k, K)
    lp = np.log(p)
    observed = np.take_along_axis(lp, x[..., None], axis=2)[..., 0].sum(axis=1)
    expected = (p * lp).sum(axis=(1, 2))
    variance = ((p * lp ** 2).sum(axis=2) - (p * lp).sum(axis=2) ** 2).sum(axis=1)
    return (observed - expected) / np.sqrt(np.maximum(variance, 1e-12)), theta


def _raw_lz(instrument: str, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(raw lz^p, EAP latent): the core engine's ``lz_many`` when present, else the local one."""
    a, b = GRM_PARAMS[instrument]
    core = _core_quality()
    if core is not None:
        grm = [core.GRMItem(a=float(ai), b=tuple(float(v) for v in bi)) for ai, bi in zip(a, b, strict=True)]
        lz, theta = core.lz_many(np.asarray(items, dtype=float), grm)
        return np.asarray(lz, dtype=float), np.asarray(theta, dtype=float)
    return _lzp_local(items, a, b)


@lru_cache(maxsize=4)
def _null_reference(instrument: str, n: int = 30_000, seed: int = 20240601) -> tuple[np.ndarray, ...]:
    """Mean and SD of lz^p by EAP latent under the model itself (parametric simulation).

    With 7-9 items lz^p is neither centred nor unit-variance at an estimated latent, and it rises at
    both ends of the scale (an all-zero answer fits "too well"); left alone it correlates with
    severity. Standardising by its simulated null distribution at the same EAP latent (in the
    spirit of Sinharay's lz*) removes that dependence without looking at the observed data.
    """
    from mh_platform.risk.cohort import grm_sample

    a, b = GRM_PARAMS[instrument]
    rng = np.random.default_rng(seed)
    theta = rng.normal(0.0, 1.3, n)
    lz, eap = _raw_lz(instrument, grm_sample(rng, theta, a, b))
    edges = np.unique(np.quantile(eap, np.linspace(0, 1, 31)))
    mids, means, sds = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (eap >= lo) & (eap <= hi)
        if m.sum() >= 50:
            mids.append(float(np.median(eap[m])))
            means.append(float(lz[m].mean()))
            sds.append(float(lz[m].std()))
    return np.array(mids), np.array(means), np.maximum(np.array(sds), 0.2)


def lzp(instrument: str, items: np.ndarray, *, standardise: bool = True) -> np.ndarray:
    """Polytomous lz person-fit of each row of ``items`` for ``instrument`` (phq9 or gad7).

    ``standardise`` (default) returns lz^p centred and scaled by its model-implied null
    distribution at the same EAP latent, so that the score is not a proxy for severity (B12).
    """
    raw, eap = _raw_lz(instrument, items)
    if not standardise:
        return raw
    mids, means, sds = _null_reference(instrument)
    return (raw - np.interp(eap, mids, means)) / np.interp(eap, mids, sds)


@dataclass(frozen=True)
class QualityReport:
    """Per-row indices and advisory flags for one screening of many students."""

    page_time_index: np.ndarray
    nonzero_longstring: np.ndarray
    longstring: np.ndarray
    irv: np.ndarray
    lz: np.ndarray                 # (lz_phq9 + lz_gad7) / sqrt 2, standardised (higher = better fit)
    too_fast: np.ndarray           # bool
    straight_line: np.ndarray      # bool
    misfit: np.ndarray             # bool (lz below cut-off)

    @property
    def rule_flag(self) -> np.ndarray:
        """Fixed-threshold rules only (page time, non-zero longstring)."""
        return self.too_fast | self.straight_line

    @property
    def advisory(self) -> np.ndarray:
        """Any advice to re-administer or interview (rules or person misfit)."""
        return self.rule_flag | self.misfit

    def index_features(self) -> np.ndarray:
        """Paradata and index features for the exploratory detector (no raw answers)."""
        return np.column_stack([self.page_time_index, self.nonzero_longstring, self.longstring, self.irv,
                                self.lz]).astype(float)


def assess(items: Mapping[str, np.ndarray], seconds: Mapping[str, np.ndarray] | None = None) -> QualityReport:
    """Quality indices for a wave: ``items`` needs phq9 and gad7; ``seconds`` is optional paradata."""
    battery = np.concatenate([items["phq9"], items["gad7"]], axis=1)
    n = battery.shape[0]
    pti = page_time_index(seconds) if seconds else np.zeros(n, dtype=np.int16)
    nls = nonzero_longstring(battery)
    lz = (lzp("phq9", items["phq9"]) + lzp("gad7", items["gad7"])) / np.sqrt(2)
    return QualityReport(page_time_index=pti, nonzero_longstring=nls, longstring=longstring(battery),
                         irv=irv(battery), lz=lz, too_fast=pti >= FAST_PAGES_MIN,
                         straight_line=nls >= NONZERO_LONGSTRING_MIN, misfit=lz < LZ_CUTOFF)


def isolation_forest_scores(report: QualityReport, seed: int = 0) -> np.ndarray:
    """Exploratory anomaly score (higher = more unusual) on index features only."""
    from sklearn.ensemble import IsolationForest

    feats = report.index_features()
    forest = IsolationForest(n_estimators=100, contamination="auto", random_state=seed, n_jobs=1)
    return -forest.fit(feats).score_samples(feats)


def quality_bars(items: Mapping[str, np.ndarray], seconds: Mapping[str, np.ndarray], careless: np.ndarray,
                 seed: int = 0) -> dict:
    """B12 (no confound with severity) and B13 (detection of injected careless responders)."""
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    rep = assess(items, seconds)
    rnd, sl, att = careless == 1, careless == 2, careless == 0
    severity = items["phq9"].sum(axis=1) + items["gad7"].sum(axis=1)
    severe = items["phq9"].sum(axis=1) >= 15
    out: dict = {"n": int(careless.shape[0]), "n_random": int(rnd.sum()), "n_straight": int(sl.sum()),
                 "lz_source": lz_source()}

    def confound(score: np.ndarray) -> dict:
        rho = float(spearmanr(score[att], severity[att]).statistic)
        top = score >= np.quantile(score, 0.95)
        base = float(severe[att].mean())
        share = float(severe[top & att].mean()) if (top & att).any() else 0.0
        return {"spearman_with_severity": round(rho, 3), "severe_share_top5": round(share, 3),
                "severe_base_rate": round(base, 3), "ratio": round(share / base, 2) if base else None}

    def detect(score: np.ndarray) -> dict:
        return {"auc_random": round(float(roc_auc_score(rnd[~sl], score[~sl])), 3),
                "auc_straight": round(float(roc_auc_score(sl[~rnd], score[~rnd])), 3)}

    neg_lz = -rep.lz
    out["lzp"] = {**confound(neg_lz), **detect(neg_lz)}
    out["nonzero_longstring_rule"] = {
        "caught_straight": round(float(rep.straight_line[sl].mean()), 4) if sl.any() else None,
        "flagged_attentive": round(float(rep.straight_line[att].mean()), 4)}
    out["page_time_rule"] = {"caught_random": round(float(rep.too_fast[rnd].mean()), 4) if rnd.any() else None,
                             "flagged_attentive": round(float(rep.too_fast[att].mean()), 4)}
    iso = isolation_forest_scores(rep, seed)
    out["isolation_forest_exploratory"] = {**confound(iso), **detect(iso)}
    lz = out["lzp"]
    out["B12"] = bool(abs(lz["spearman_with_severity"]) <= 0.3 and lz["ratio"] is not None and lz["ratio"] <= 2.0)
    nz = out["nonzero_longstring_rule"]
    out["B13"] = bool(lz["auc_random"] >= 0.85 and (nz["caught_straight"] or 0) >= 0.95
                      and nz["flagged_attentive"] <= 0.005)
    return out
