"""Time-ordered (UUIDv7-layout) ids: the response table's primary-key default and the paper import's
batch ids."""

from __future__ import annotations

import time
import uuid

from mh_platform.db.base import time_ordered_ids, time_ordered_uuid


def _ms(u: uuid.UUID) -> int:
    return u.int >> 80


def test_time_ordered_uuid_is_version_7_with_the_current_millisecond():
    before = time.time_ns() // 1_000_000
    ids = [time_ordered_uuid() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for u in ids:
        assert u.version == 7 and u.variant == uuid.RFC_4122
        assert before <= _ms(u) <= after
    # later ids sort after earlier ones across milliseconds (the b-tree's right edge)
    first = time_ordered_uuid()
    time.sleep(0.002)
    assert time_ordered_uuid().bytes > first.bytes


def test_batch_ids_are_sorted_unique_version_7_and_after_earlier_ids():
    earlier = time_ordered_uuid()
    time.sleep(0.002)
    raw = time_ordered_ids(5000)
    assert raw == sorted(raw) and len(set(raw)) == 5000
    ids = [uuid.UUID(bytes=b) for b in raw]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in ids)
    assert len({_ms(u) for u in ids}) == 1 and raw[0] > earlier.bytes
    # the random part is random: not two equal low halves, both version/variant bits kept
    assert len({u.int & ((1 << 62) - 1) for u in ids}) == 5000
    assert time_ordered_ids(0) == []
