"""Cluster alert: several red/orange flags close together in one class or school → postvention notice.

Rule (``[cluster]`` in ``flag_policy.toml``; default 3 in one class or 5 in one school within 14 days,
levels red and orange): flags dismissed as false positives do not count; after an alert for a unit,
only flags opened after it count towards the next one (pass ``last_alert_at``), so a running cluster is
announced once. The notice goes to the school and the county and suggests targeted re-screening.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from mh_platform.core.flag_rules import ClusterPolicy, default_flag_policy
from mh_platform.core.types import Level, Tier

Scope = Literal["class", "school"]

SUGGESTION_CLASS = "rescreen_class"  # targeted re-screening of the class (postvention)
SUGGESTION_SCHOOL = "rescreen_affected_classes"  # re-screen the classes involved; school postvention review


@dataclass(frozen=True)
class ClusterFlag:
    """What the rule reads of a flag: ids, level, when it was opened, whether it was dismissed."""

    flag_id: Hashable
    level: Level
    class_id: Hashable
    school_id: Hashable
    opened_at: datetime
    dismissed: bool = False


@dataclass(frozen=True)
class ClusterAlert:
    """A cluster in one class or school: the flags, the window, who to tell and the suggested step."""

    scope: Scope
    unit_id: Hashable
    school_id: Hashable
    flag_ids: tuple[Hashable, ...]
    class_ids: tuple[Hashable, ...]
    window_start: datetime
    window_end: datetime
    suggestion: str
    notify_tiers: tuple[Tier, ...]
    dedupe_key: str

    @property
    def count(self) -> int:
        """Number of flags in the cluster."""
        return len(self.flag_ids)


def detect_clusters(flags: Iterable[ClusterFlag], now: datetime, policy: ClusterPolicy | None = None, *,
                    last_alert_at: Mapping[tuple[Scope, Hashable], datetime] | None = None) -> list[ClusterAlert]:
    """Alerts due at ``now``: class alerts first, then school alerts, each sorted by unit id."""
    p = policy or default_flag_policy().cluster
    last = last_alert_at or {}
    start = now - p.window
    recent = [f for f in flags if f.level in p.levels and not f.dismissed and start < f.opened_at <= now]
    by_unit: dict[tuple[Scope, Hashable], list[ClusterFlag]] = defaultdict(list)
    for f in recent:
        by_unit[("class", f.class_id)].append(f)
        by_unit[("school", f.school_id)].append(f)
    alerts: list[ClusterAlert] = []
    for (scope, unit), members in by_unit.items():
        since = last.get((scope, unit))
        counted = sorted((f for f in members if since is None or f.opened_at > since),
                         key=lambda f: (f.opened_at, str(f.flag_id)))
        threshold = p.class_threshold if scope == "class" else p.school_threshold
        if len(counted) < threshold:
            continue
        first = counted[0].opened_at
        alerts.append(ClusterAlert(
            scope=scope, unit_id=unit, school_id=counted[0].school_id,
            flag_ids=tuple(f.flag_id for f in counted),
            class_ids=tuple(sorted({f.class_id for f in counted}, key=str)),
            window_start=first, window_end=now,
            suggestion=SUGGESTION_CLASS if scope == "class" else SUGGESTION_SCHOOL,
            notify_tiers=(Tier.SCHOOL, Tier.COUNTY),
            dedupe_key=f"cluster:{scope}:{unit}:{first.isoformat()}",
        ))
    return sorted(alerts, key=lambda a: (a.scope != "class", str(a.unit_id)))
