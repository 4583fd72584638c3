"""Materialised paths: containment, ancestors, kinds and tiers."""

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mh_platform.core.errors import ValidationFailed
from mh_platform.core.org_scope import (
    ancestor_of_kind,
    ancestors,
    depth,
    is_within,
    kind_of,
    make_path,
    parent,
    segments,
    subtree_range,
    tier_of,
    validate_path,
)
from mh_platform.core.types import Tier, UnitKind

CITY, COUNTY, SCHOOL, GRADE, CLASS = "/1/", "/1/5/", "/1/5/17/", "/1/5/17/3/", "/1/5/17/3/9/"


def test_within_and_not_within():
    assert is_within(COUNTY, CLASS) and is_within(CLASS, CLASS) and is_within(CITY, SCHOOL)
    assert not is_within(CLASS, SCHOOL)
    assert not is_within("/1/5/", "/1/51/")  # a prefix of the id is not an ancestor
    assert not is_within("/1/5/17/", "/1/5/1/")


def test_ancestors_parent_depth_kind():
    assert ancestors(CLASS) == [CITY, COUNTY, SCHOOL, GRADE]
    assert ancestors(CITY) == []
    assert parent(CLASS) == GRADE and parent(CITY) is None
    assert [depth(p) for p in (CITY, COUNTY, SCHOOL, GRADE, CLASS)] == [0, 1, 2, 3, 4]
    assert kind_of(SCHOOL) == UnitKind.SCHOOL
    assert ancestor_of_kind(CLASS, UnitKind.SCHOOL) == SCHOOL
    assert ancestor_of_kind(CLASS, UnitKind.CLASS) == CLASS
    assert ancestor_of_kind(COUNTY, UnitKind.SCHOOL) is None
    assert segments(SCHOOL) == ["1", "5", "17"]


def test_uuid_paths_like_the_database():
    ids = [uuid.uuid4() for _ in range(3)]
    p = None
    for i in ids:
        p = make_path(p, i.hex)
    assert p == "/" + "/".join(i.hex for i in ids) + "/"
    assert is_within(make_path(None, ids[0].hex), p)


@pytest.mark.parametrize("bad", ["", "/", "1/", "/1", "//", "/1//2/", "/A/", "/1/2/3/4/5/6/", "/../", None])
def test_bad_paths_refused(bad):
    with pytest.raises(ValidationFailed):
        validate_path(bad)


@pytest.mark.parametrize(("kind", "tier"), [("city", Tier.CITY), ("county", Tier.COUNTY), ("school", Tier.SCHOOL),
                                            ("grade", Tier.CLASS), ("class", Tier.CLASS)])
def test_tier_of(kind, tier):
    assert tier_of(kind) == tier


seg = st.text(alphabet="0123456789abcdef", min_size=1, max_size=6)
paths = st.lists(seg, min_size=1, max_size=5).map(lambda s: "/" + "/".join(s) + "/")


@given(paths, paths)
def test_within_matches_segment_prefix_and_range(a, b):
    sa, sb = segments(a), segments(b)
    expected = sb[: len(sa)] == sa
    assert is_within(a, b) == expected
    lo, hi = subtree_range(a)
    assert (lo <= b < hi) == expected
    for anc in ancestors(b):
        assert is_within(anc, b)
