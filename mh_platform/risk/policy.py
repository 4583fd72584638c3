"""Watch-signal policy as data, the prediction target, and the one way the model meets the flags.

The risk model never decides anything about a student. Its only output into the flag system is a
yellow (III) "watch" signal in the counsellor's queue. :func:`combine` is the single function that
merges it with the level the rules produced, and it is written so that it can only *add* a yellow
level where the rules gave none: it never removes, lowers or delays a rule flag (it does not even
look at the model when a rule flag exists). ``tests/risk/test_policy.py`` checks this with
hypothesis over every rule level and every possible watch value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from mh_platform.core.types import LEVEL_RANK, Level


@dataclass(frozen=True)
class WatchPolicy:
    """The operating point of the watch signal: a policy decision, recorded in the model card.

    * ``target_flag_rate``: at training, the probability threshold is set so that about this share
      of eligible students would get a watch signal (counsellor workload).
    * ``flag_rate_cap``: the most the watch signal may flag on a held-out cohort (bar B10).
    * ``threshold``: if set, overrides the threshold stored in the model manifest.
    * ``max_level``: the highest level the model can ever produce (yellow, fixed).
    """

    target_flag_rate: float = 0.08
    flag_rate_cap: float = 0.10
    threshold: float | None = None
    max_level: Level = Level.YELLOW
    top_items: int = 3
    # prediction target: "high band" = PHQ-9 total >= 15 or PHQ-9 item 9 >= 1 (a critical item,
    # which the rules raise as red or orange)
    high_band_phq9_total: int = 15
    critical_item_index: int = 8          # 0-based: PHQ-9 item 9
    critical_item_min: int = 1

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_level"] = str(self.max_level)
        return d


DEFAULT_POLICY = WatchPolicy()


def in_high_band(phq9_items: np.ndarray, policy: WatchPolicy = DEFAULT_POLICY) -> np.ndarray:
    """Rows whose PHQ-9 answers already put them in the high band (total >= 15 or item 9 >= 1).

    Missing items (NaN) count as 0 for the total here; a missing item 9 is not "high band" for
    the target, but the rules flag it separately ("critical item unanswered").
    """
    x = np.asarray(phq9_items, dtype=float)
    total = np.nansum(x, axis=1)
    crit = np.nan_to_num(x[:, policy.critical_item_index], nan=0.0)
    return (total >= policy.high_band_phq9_total) | (crit >= policy.critical_item_min)


def _watch_on(watch: Any) -> bool:
    """Whether a watch value asks for a yellow signal. Anything unclear means no."""
    if watch is None:
        return False
    if isinstance(watch, bool | np.bool_):
        return bool(watch)
    flag = getattr(watch, "over_threshold", None)
    if flag is None:  # the core flag rules' WatchSignal calls it ``watch``
        flag = getattr(watch, "watch", None)
    if flag is None:
        return False
    return bool(flag) if isinstance(flag, bool | np.bool_) else False


def combine(rule_level: Level | None, watch: Any) -> Level | None:
    """The level a student ends up with, given the rules' level and the model's watch signal.

    * A rule level (red, orange or yellow) is returned unchanged, whatever the model says; the
      model is not consulted, so it cannot lower, remove or delay it.
    * With no rule level, a watch signal over its threshold gives yellow (III); anything else
      (no signal, under the threshold, a missing or broken model) gives no level.
    """
    if rule_level is not None:
        return Level(rule_level)
    return Level.YELLOW if _watch_on(watch) else None


def combine_many(rule_levels: list[Level | None], watches: list[Any]) -> list[Level | None]:
    return [combine(r, w) for r, w in zip(rule_levels, watches, strict=True)]


def rank(level: Level | None) -> int:
    return 0 if level is None else LEVEL_RANK[Level(level)]
