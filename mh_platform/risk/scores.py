"""Totals of item matrices, through the project's scoring engine when it is available.

The calibration test and ``mhp model cohort-stats`` score the synthetic cohort with the core
engine (``mh_platform.core.scoring.score_many(instrument, matrix).total``), so the generator is
checked against the same code that scores real students. For an instrument the engine has no
definition for (WHO-5 at the time of writing) or if the engine is missing, :func:`totals` falls
back to plain numpy sums; :func:`engine_has` says which path was taken and ``cohort-stats``
reports it per instrument.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any

import numpy as np


@lru_cache(maxsize=1)
def _engine() -> Any | None:
    try:
        return importlib.import_module("mh_platform.core.scoring")
    except ImportError:
        return None


def engine_available() -> bool:
    mod = _engine()
    return mod is not None and hasattr(mod, "score_many")


@lru_cache(maxsize=8)
def _instrument(name: str) -> Any:
    mod = _engine()
    loader = getattr(mod, "load_instrument", None)
    if loader is None:
        loader = importlib.import_module("mh_platform.core.instruments").load_instrument
    return loader(name)


def engine_has(instrument: str) -> bool:
    """Whether the engine is there and has a definition file for ``instrument``."""
    if not engine_available():
        return False
    try:
        _instrument(instrument)
    except Exception:  # noqa: BLE001 - no definition (e.g. WHO-5 not shipped yet): fall back
        return False
    return True


def engine_scores(instrument: str, matrix: np.ndarray) -> Any:
    """``score_many`` on ``matrix``; columns beyond the generated items (e.g. the PHQ-9/GAD-7
    functional-difficulty item, not scored) are passed as unanswered (NaN)."""
    mod = _engine()
    assert mod is not None
    inst = _instrument(instrument)
    x = np.asarray(matrix, dtype=float)
    n_items = int(getattr(inst, "n_items", None) or x.shape[1])
    if x.shape[1] < n_items:
        x = np.concatenate([x, np.full((x.shape[0], n_items - x.shape[1]), np.nan)], axis=1)
    return mod.score_many(inst, x)


def _engine_totals(instrument: str, matrix: np.ndarray) -> np.ndarray:
    return np.asarray(engine_scores(instrument, matrix).total, dtype=float)


def numpy_totals(instrument: str, matrix: np.ndarray) -> np.ndarray:
    """Plain sums of the item scores (no missing items in the synthetic cohort)."""
    return np.asarray(matrix, dtype=float).sum(axis=1)


def totals(instrument: str, matrix: np.ndarray, *, use_engine: bool = True) -> np.ndarray:
    """Total score per row of ``matrix`` (n, k); NaN where the engine declares no total."""
    if use_engine and engine_has(instrument):
        return _engine_totals(instrument, matrix)
    return numpy_totals(instrument, matrix)


def cronbach_alpha(matrix: np.ndarray) -> float:
    x = np.asarray(matrix, dtype=float)
    k = x.shape[1]
    return float(k / (k - 1) * (1 - x.var(axis=0, ddof=1).sum() / x.sum(axis=1).var(ddof=1)))
