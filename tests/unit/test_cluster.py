"""Cluster alerts: 3 red/orange in a class or 5 in a school within 14 days; once per running cluster."""

from datetime import UTC, datetime, timedelta

from mh_platform.core.cluster import SUGGESTION_CLASS, SUGGESTION_SCHOOL, ClusterFlag, detect_clusters
from mh_platform.core.flag_rules import ClusterPolicy
from mh_platform.core.types import Level, Tier

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
D = timedelta(days=1)
R, OR, Y = Level.RED, Level.ORANGE, Level.YELLOW


def flag(i, level=R, cls="c1", school="s1", days_ago=1.0, dismissed=False):
    return ClusterFlag(f"f{i}", level, cls, school, NOW - days_ago * D, dismissed)


def test_three_in_a_class_within_14_days():
    alerts = detect_clusters([flag(1, R), flag(2, OR, days_ago=5), flag(3, R, days_ago=13.9)], NOW)
    assert len(alerts) == 1
    a = alerts[0]
    assert (a.scope, a.unit_id, a.count, a.suggestion) == ("class", "c1", 3, SUGGESTION_CLASS)
    assert a.flag_ids == ("f3", "f2", "f1") and a.window_start == NOW - 13.9 * D
    assert a.notify_tiers == (Tier.SCHOOL, Tier.COUNTY)
    assert a.dedupe_key == f"cluster:class:c1:{(NOW - 13.9 * D).isoformat()}"


def test_yellow_old_dismissed_and_future_flags_do_not_count():
    flags = [flag(1), flag(2), flag(3, Y), flag(4, days_ago=14), flag(5, dismissed=True), flag(6, days_ago=-1)]
    assert detect_clusters(flags, NOW) == []


def test_five_in_a_school_across_classes():
    flags = [flag(i, cls=f"c{i % 3}") for i in range(5)]
    alerts = detect_clusters(flags, NOW)
    assert [a.scope for a in alerts] == ["school"]
    assert alerts[0].suggestion == SUGGESTION_SCHOOL and alerts[0].class_ids == ("c0", "c1", "c2")
    flags.append(flag(9, cls="c1"))
    assert [(a.scope, a.unit_id) for a in detect_clusters(flags, NOW)] == [("class", "c1"), ("school", "s1")]


def test_other_schools_are_separate():
    flags = [flag(i, cls=f"c{i}", school=f"s{i % 2}") for i in range(8)]
    assert detect_clusters(flags, NOW) == []


def test_announced_once_per_running_cluster():
    flags = [flag(1, days_ago=3), flag(2, days_ago=2), flag(3, days_ago=1)]
    first = detect_clusters(flags, NOW)
    assert len(first) == 1
    last = {("class", "c1"): NOW}
    later = NOW + D
    flags.append(ClusterFlag("f4", R, "c1", "s1", later))
    assert detect_clusters(flags, later, last_alert_at=last) == []
    # without the memory the same cluster would be re-announced
    assert len(detect_clusters(flags, later)) == 1


def test_configurable_thresholds():
    p = ClusterPolicy(levels=frozenset({R, OR, Y}), window=timedelta(days=30), class_threshold=2, school_threshold=10)
    alerts = detect_clusters([flag(1, Y, days_ago=20), flag(2, Y, days_ago=25)], NOW, p)
    assert [a.scope for a in alerts] == ["class"]
