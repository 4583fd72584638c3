"""Shared helpers for `make bench`: every result is a ratio against a baseline measured in the same run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def result(name: str, unit: str, value: float, baseline: float, target: float,
           higher_is_better: bool = True, **extra: Any) -> dict:
    """One row of bench/results.json.

    ``ratio`` is value/baseline; ``passed`` compares it with ``target`` (a minimum ratio when
    higher is better, a maximum ratio otherwise).
    """
    ratio = value / baseline if baseline else float("inf")
    passed = ratio >= target if higher_is_better else ratio <= target
    row = {"name": name, "unit": unit, "value": round(value, 6), "baseline": round(baseline, 6),
           "ratio": round(ratio, 4), "target": target, "passed": bool(passed)}
    row.update(extra)
    return row


def absolute(name: str, unit: str, value: float, limit: float, higher_is_better: bool = False,
             **extra: Any) -> dict:
    """A row whose goal is an absolute limit (e.g. seconds per sweep): baseline is the limit."""
    return result(name, unit, value, limit, 1.0, higher_is_better=higher_is_better, **extra)


def median_time(fn: Callable[[], Any], repeat: int = 5) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)
