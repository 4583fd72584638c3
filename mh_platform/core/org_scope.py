"""Materialised-path helpers for the org tree (city → county → school → grade → class).

A path lists the ids from the city down, each followed by "/": "/1/5/17/" or "/<uuid hex>/<uuid hex>/".
Segments are lowercase letters and digits (hex ids, numbers). A unit is within another when its path
starts with the other's path; "everything under X" is the half-open range [path, path[:-1] + "0").
"""

from __future__ import annotations

import re

from mh_platform.core.errors import ValidationFailed
from mh_platform.core.types import UNIT_DEPTH, Tier, UnitKind

_PATH = re.compile(r"^/(?:[0-9a-z]+/)+$")

TIER_OF_KIND: dict[UnitKind, Tier] = {
    UnitKind.CITY: Tier.CITY,
    UnitKind.COUNTY: Tier.COUNTY,
    UnitKind.SCHOOL: Tier.SCHOOL,
    UnitKind.GRADE: Tier.CLASS,
    UnitKind.CLASS: Tier.CLASS,
}


def validate_path(path: str) -> str:
    """Return ``path`` if well formed ("/a/b/"), else raise ValidationFailed."""
    if not isinstance(path, str) or not _PATH.match(path) or path.count("/") - 1 > len(UnitKind):
        raise ValidationFailed(f"bad org path {path!r}", [{"field": "path", "value": str(path)}])
    return path


def make_path(parent_path: str | None, segment: str) -> str:
    """Path of a child unit: the parent's path plus ``segment`` (a city has no parent)."""
    base = "/" if parent_path is None else validate_path(parent_path)
    return validate_path(f"{base}{segment}/")


def segments(path: str) -> list[str]:
    """The ids along ``path``, city first."""
    return validate_path(path).strip("/").split("/")


def depth(path: str) -> int:
    """0 for the city, 1 for a county … 4 for a class (matches ``types.UNIT_DEPTH``)."""
    return len(segments(path)) - 1


def kind_of(path: str) -> UnitKind:
    """The unit kind a path of this depth names."""
    return list(UnitKind)[depth(path)]


def parent(path: str) -> str | None:
    """The parent's path, or None for the city."""
    segs = segments(path)
    return None if len(segs) == 1 else "/" + "/".join(segs[:-1]) + "/"


def ancestors(path: str) -> list[str]:
    """Paths of every ancestor, city first, excluding ``path`` itself."""
    segs = segments(path)
    return ["/" + "/".join(segs[: i + 1]) + "/" for i in range(len(segs) - 1)]


def ancestor_of_kind(path: str, kind: UnitKind) -> str | None:
    """The path of the ancestor (or self) of ``kind``; None when ``path`` is above that kind."""
    segs = segments(path)
    d = UNIT_DEPTH[kind]
    return "/" + "/".join(segs[: d + 1]) + "/" if d < len(segs) else None


def is_within(actor_path: str, target_path: str) -> bool:
    """True when the target unit is the actor's unit or below it."""
    return validate_path(target_path).startswith(validate_path(actor_path))


def subtree_range(path: str) -> tuple[str, str]:
    """Half-open string range [lo, hi) holding ``path`` and every path below it ('/' sorts before '0')."""
    validate_path(path)
    return path, path[:-1] + "0"


def tier_of(kind: UnitKind | str) -> Tier:
    """The tier responsible for a unit kind: class and grade → class tier, school, county, city."""
    return TIER_OF_KIND[UnitKind(kind)]
