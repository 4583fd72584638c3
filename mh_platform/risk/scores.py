"""Totals of item matrices, through the project's scoring engine when it is available.

The calibration test and ``mhp model cohort-stats`` score the synthetic cohort with the core
engine (``mh_platform.core.scoring.score_many(instrument, matrix).total``), so the generator is
checked against the same code that scores real students. Until the engine exists (it is written
in parallel), :func:`totals` falls back to plain numpy sums; :func:`engine_available` says which
path was taken and ``cohort-stats`` reports it.
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


def _engine_totals(instrument: str, matrix: np.ndarray) -> np.ndarray:
    mod = _engine()
    try:
        result = mod.score_many(instrument, matrix)
    except (TypeError, KeyError, ValueError, AttributeError, LookupError):
        result = mod.score_many(_instrument(instrument), matrix)
    total = result.total if hasattr(result, "total") else result["total"]
    return np.asarray(total, dtype=float)


def numpy_totals(instrument: str, matrix: np.ndarray) -> np.ndarray:
    """Plain sums of the item scores (no missing items in the synthetic cohort)."""
    return np.asarray(matrix, dtype=float).sum(axis=1)


def totals(instrument: str, matrix: np.ndarray, *, use_engine: bool = True) -> np.ndarray:
    """Total score per row of ``matrix`` (n, k); NaN where the engine declares no total."""
    if use_engine and engine_available():
        return _engine_totals(instrument, matrix)
    return numpy_totals(instrument, matrix)


def cronbach_alpha(matrix: np.ndarray) -> float:
    x = np.asarray(matrix, dtype=float)
    k = x.shape[1]
    return float(k / (k - 1) * (1 - x.var(axis=0, ddof=1).sum() / x.sum(axis=1).var(ddof=1)))
