"""The four-tier escalation policy as data: deadlines per level and tier, where a flag starts, who is told.

Rules (defaults in ``escalation_policy.toml``, DESIGN.md table; a city may supply its own file):

- A flag starts at the class tier when a class monitor logs the concern, else at the school tier.
- Entering a tier (raise or escalation) starts two clocks: acknowledge within ``ack_within`` and
  handle (interview / plan) within ``handle_within``. Acknowledging stops the first, assessing both.
- A missed deadline moves the flag one tier up, never above the level's ``ceiling`` (watch-only flags:
  never above the school). At the ceiling the step is a reminder at the same tier; either way the
  clocks restart at the step's time, so each missed deadline produces exactly one step.
- Tiers below the current one always see the flag; red flags are shown to the county at once and
  to the city once open longer than ``inform_city_after``.

Pure: no clock reads (``now`` is passed in) and no I/O except reading the packaged default file.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any, Literal, Protocol

from mh_platform.core.errors import ValidationFailed
from mh_platform.core.types import LEVEL_RANK, TIER_ORDER, Level, Role, Tier, next_tier

_DURATION = re.compile(r"^\s*(\d+)\s*([mhd])\s*$")
_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1)}

Missed = Literal["ack", "handle"]

# Evidence sources (``flag_rules.EvidenceSource`` values; a unit test keeps the two in step).
SCREENING_SOURCES: frozenset[str] = frozenset({"band", "critical", "critical_unanswered", "deterioration"})
EVIDENCE_SOURCES: frozenset[str] = SCREENING_SOURCES | {"concern", "model"}


def parse_duration(text: str) -> timedelta:
    """``"90m"``, ``"24h"``, ``"7d"`` → timedelta; anything else (or zero) is refused."""
    m = _DURATION.match(text) if isinstance(text, str) else None
    if not m or int(m.group(1)) <= 0:
        raise ValidationFailed(f"bad duration {text!r}", [{"field": "duration", "value": str(text)}])
    return int(m.group(1)) * _UNIT[m.group(2)]


def tier_rank(tier: Tier) -> int:
    """Position of ``tier`` bottom-up (class 0 … city 3)."""
    return TIER_ORDER.index(tier)


@dataclass(frozen=True)
class Deadlines:
    """Acknowledge and handle windows for one level at one tier."""

    ack_within: timedelta
    handle_within: timedelta


@dataclass(frozen=True)
class LevelPolicy:
    """What the policy says for one level; ``tiers`` overrides the windows at a given tier."""

    level: Level
    deadlines: Deadlines
    ceiling: Tier
    inform_on_miss: tuple[Role, ...] = ()
    inform_county_at_once: bool = False
    inform_city_after: timedelta | None = None
    tiers: Mapping[Tier, Deadlines] = field(default_factory=dict)

    def deadlines_at(self, tier: Tier) -> Deadlines:
        """Windows at ``tier`` (override or level default)."""
        return self.tiers.get(tier, self.deadlines)


@dataclass(frozen=True)
class EscalationPolicy:
    """The whole escalation policy; build it with ``parse_escalation_policy`` (validated)."""

    levels: Mapping[Level, LevelPolicy]
    start_screening: Tier
    start_model: Tier
    start_concern: Mapping[Role, Tier]
    start_concern_default: Tier
    tier_roles: Mapping[Tier, Role]
    watch_ceiling: Tier
    retriage_sources: frozenset[str] = frozenset({"critical", "critical_unanswered", "concern", "deterioration"})
    retriage_on_close_requested: bool = True


@dataclass(frozen=True)
class EscalationStep:
    """One due escalation: the deadline missed, from → to tier (equal at the ceiling: a reminder), who is told."""

    missed: Missed
    due_at: datetime
    at: datetime
    level: Level
    from_tier: Tier
    to_tier: Tier
    inform: tuple[Role, ...]

    @property
    def is_reminder(self) -> bool:
        """True when the flag is already at its ceiling and only the clocks restart."""
        return self.from_tier == self.to_tier


@dataclass(frozen=True)
class OversightNotice:
    """A one-time oversight notice: a red flag shown to the county at once, or to the city after 48 h."""

    tier: Tier
    role: Role
    reason_code: str


class EscalatableFlag(Protocol):
    """What the escalation rules read from a flag (``flag_lifecycle.FlagState`` satisfies it)."""

    @property
    def level(self) -> Level: ...
    @property
    def tier(self) -> Tier: ...
    @property
    def status(self) -> str: ...
    @property
    def opened_at(self) -> datetime: ...
    @property
    def ack_due_at(self) -> datetime | None: ...
    @property
    def handle_due_at(self) -> datetime | None: ...
    @property
    def is_watch(self) -> bool: ...
    @property
    def county_informed_at(self) -> datetime | None: ...
    @property
    def city_informed_at(self) -> datetime | None: ...


# ----------------------------------------------------------------------------- parsing and loading


def _tier(value: Any, where: str, errors: list[dict]) -> Tier:
    try:
        return Tier(value)
    except ValueError:
        errors.append({"field": where, "error": f"unknown tier {value!r}"})
        return Tier.SCHOOL


def _role(value: Any, where: str, errors: list[dict]) -> Role | None:
    try:
        return Role(value)
    except ValueError:
        errors.append({"field": where, "error": f"unknown role {value!r}"})
        return None


def _dur(value: Any, where: str, errors: list[dict]) -> timedelta:
    try:
        return parse_duration(value)
    except ValidationFailed:
        errors.append({"field": where, "error": f"bad duration {value!r}"})
        return timedelta(hours=1)


def _deadlines(raw: Mapping[str, Any], where: str, errors: list[dict]) -> Deadlines:
    ack = _dur(raw.get("ack_within"), f"{where}.ack_within", errors)
    handle = _dur(raw.get("handle_within"), f"{where}.handle_within", errors)
    if ack > handle:
        errors.append({"field": where, "error": "ack_within must not exceed handle_within"})
    return Deadlines(ack, handle)


def parse_escalation_policy(data: Mapping[str, Any] | str) -> EscalationPolicy:
    """Validate a policy (TOML text or parsed mapping); every problem is listed in ValidationFailed.errors."""
    if isinstance(data, str):
        try:
            data = tomllib.loads(data)
        except tomllib.TOMLDecodeError as exc:
            raise ValidationFailed(f"escalation policy is not TOML: {exc}") from exc
    errors: list[dict] = []
    if data.get("format") != 1:
        errors.append({"field": "format", "error": "must be 1"})
    raw_levels = data.get("levels", {})
    levels: dict[Level, LevelPolicy] = {}
    for level in Level:
        raw = raw_levels.get(level.value)
        where = f"levels.{level.value}"
        if not isinstance(raw, Mapping):
            errors.append({"field": where, "error": "missing"})
            continue
        tiers = {
            _tier(t, f"{where}.tiers", errors): _deadlines(v, f"{where}.tiers.{t}", errors)
            for t, v in raw.get("tiers", {}).items()
        }
        inform = tuple(r for r in (_role(x, f"{where}.inform_on_miss", errors)
                                   for x in raw.get("inform_on_miss", [])) if r is not None)
        city_after = raw.get("inform_city_after")
        levels[level] = LevelPolicy(
            level=level,
            deadlines=_deadlines(raw, where, errors),
            ceiling=_tier(raw.get("ceiling"), f"{where}.ceiling", errors),
            inform_on_miss=inform,
            inform_county_at_once=bool(raw.get("inform_county_at_once", False)),
            inform_city_after=None if city_after is None else _dur(city_after, f"{where}.inform_city_after", errors),
            tiers=tiers,
        )
    unknown = set(raw_levels) - {lv.value for lv in Level}
    if unknown:
        errors.append({"field": "levels", "error": f"unknown levels {sorted(unknown)}"})
    # Urgency must not invert: a more severe level never gets a longer window than a milder one.
    if len(levels) == len(Level):
        order = sorted(Level, key=lambda lv: -LEVEL_RANK[lv])
        for hi, lo in zip(order, order[1:], strict=False):
            if levels[hi].deadlines.ack_within > levels[lo].deadlines.ack_within or (
                levels[hi].deadlines.handle_within > levels[lo].deadlines.handle_within
            ):
                errors.append({"field": f"levels.{hi.value}", "error": f"deadlines longer than {lo.value}'s"})
    start = data.get("start_tier", {})
    concern = {
        r: _tier(t, f"start_tier.concern.{k}", errors)
        for k, t in start.get("concern", {}).items()
        if (r := _role(k, f"start_tier.concern.{k}", errors)) is not None
    }
    roles_raw = data.get("tier_roles", {})
    tier_roles: dict[Tier, Role] = {}
    for tier in Tier:
        r = _role(roles_raw.get(tier.value), f"tier_roles.{tier.value}", errors)
        if r is not None:
            tier_roles[tier] = r
    retriage = data.get("retriage", {})
    sources = retriage.get("sources", ["critical", "critical_unanswered", "concern", "deterioration"])
    if not isinstance(sources, list) or not set(sources) <= EVIDENCE_SOURCES:
        errors.append({"field": "retriage.sources", "error": f"a list of {sorted(EVIDENCE_SOURCES)} expected"})
        sources = []
    on_close = retriage.get("close_requested", "any")
    if on_close not in ("any", "sources"):
        errors.append({"field": "retriage.close_requested", "error": "must be 'any' or 'sources'"})
    policy = EscalationPolicy(
        levels=levels,
        start_screening=_tier(start.get("screening", "school"), "start_tier.screening", errors),
        start_model=_tier(start.get("model", "school"), "start_tier.model", errors),
        start_concern=concern,
        start_concern_default=_tier(start.get("concern_default", "school"), "start_tier.concern_default", errors),
        tier_roles=tier_roles,
        watch_ceiling=_tier(data.get("watch", {}).get("ceiling", "school"), "watch.ceiling", errors),
        retriage_sources=frozenset(sources),
        retriage_on_close_requested=on_close == "any",
    )
    if errors:
        raise ValidationFailed("invalid escalation policy", errors)
    return policy


@cache
def default_escalation_policy() -> EscalationPolicy:
    """The packaged default policy (DESIGN.md table), parsed once."""
    text = resources.files("mh_platform.core").joinpath("escalation_policy.toml").read_text(encoding="utf-8")
    return parse_escalation_policy(text)


# ----------------------------------------------------------------------------- rules


def start_tier(source: str, reporter_role: Role | None = None, policy: EscalationPolicy | None = None) -> Tier:
    """Tier a new flag starts at: ``source`` is "screening", "model" or "concern" (then by reporter role)."""
    p = policy or default_escalation_policy()
    if source == "concern":
        if reporter_role is not None and reporter_role in p.start_concern:
            return p.start_concern[reporter_role]
        return p.start_concern_default
    if source == "model":
        return p.start_model
    if source == "screening" or source in SCREENING_SOURCES:
        return p.start_screening
    raise ValidationFailed(f"unknown flag source {source!r}", [{"field": "source", "value": source}])


def deadlines_for(
    level: Level, tier: Tier, since: datetime, policy: EscalationPolicy | None = None
) -> tuple[datetime, datetime]:
    """(ack_due, handle_due) for a flag of ``level`` that entered ``tier`` at ``since``."""
    d = (policy or default_escalation_policy()).levels[level].deadlines_at(tier)
    return since + d.ack_within, since + d.handle_within


def ceiling_for(level: Level, is_watch: bool, policy: EscalationPolicy | None = None) -> Tier:
    """Highest tier automatic escalation may reach: the level's ceiling, capped at the school for watch-only flags."""
    p = policy or default_escalation_policy()
    ceiling = p.levels[level].ceiling
    if is_watch and tier_rank(p.watch_ceiling) < tier_rank(ceiling):
        return p.watch_ceiling
    return ceiling


def due_escalation(
    flag: EscalatableFlag, now: datetime, policy: EscalationPolicy | None = None
) -> EscalationStep | None:
    """The escalation due at ``now`` (earliest missed deadline first), or None; closed flags never escalate."""
    p = policy or default_escalation_policy()
    if flag.status == "closed":
        return None
    missed: Missed
    if flag.ack_due_at is not None and now >= flag.ack_due_at:
        missed, due = "ack", flag.ack_due_at
    elif flag.handle_due_at is not None and now >= flag.handle_due_at:
        missed, due = "handle", flag.handle_due_at
    else:
        return None
    ceiling = ceiling_for(flag.level, flag.is_watch, p)
    up = next_tier(flag.tier)
    to = up if up is not None and tier_rank(up) <= tier_rank(ceiling) else flag.tier
    # a watch-only flag is the counsellor's alone (the model's signal is shown to no other role): only
    # the acting role is told, not the level's ``inform_on_miss``
    also = () if flag.is_watch else p.levels[flag.level].inform_on_miss
    inform = tuple(dict.fromkeys([p.tier_roles[to], *also]))
    return EscalationStep(missed, due, now, flag.level, flag.tier, to, inform)


def reachable_tier(
    tier: Tier, staffed: Collection[Tier], *, is_watch: bool = False, policy: EscalationPolicy | None = None
) -> Tier | None:
    """The tier that acts on a flag whose responsible tier is ``tier``, given the tiers whose unit (of the
    flag's path) has an active person in the tier's acting role (``staffed``, from ``tier_roles``).

    ``tier`` itself when it is staffed; else the lowest staffed tier above it, at once — a flag never
    waits for a deadline at a tier where nobody can be told. The level's ceiling does not apply:
    this is who can be reached, not an escalation for a missed deadline. None when no tier at or above
    ``tier`` is staffed; for a watch-only flag, when none is staffed up to the watch ceiling (the
    model's signal never leaves the school, so it stays there and the gap is only recorded)."""
    p = policy or default_escalation_policy()
    top = p.watch_ceiling if is_watch else Tier.CITY
    for t in TIER_ORDER[tier_rank(tier): tier_rank(top) + 1]:
        if t in staffed:
            return t
    return None


def observers(
    level: Level, tier: Tier, opened_at: datetime, now: datetime, policy: EscalationPolicy | None = None
) -> frozenset[Tier]:
    """Tiers that see the flag: its tier and all below; the county at once for red; the city if red open too long."""
    lp = (policy or default_escalation_policy()).levels[level]
    seen = set(TIER_ORDER[: tier_rank(tier) + 1])
    if lp.inform_county_at_once:
        seen.add(Tier.COUNTY)
    if lp.inform_city_after is not None and now - opened_at > lp.inform_city_after:
        seen.add(Tier.CITY)
    return frozenset(seen)


def due_oversight_notices(
    flag: EscalatableFlag, now: datetime, policy: EscalationPolicy | None = None
) -> list[OversightNotice]:
    """One-time notices still owed: county for a red flag at once, city once it is open too long."""
    p = policy or default_escalation_policy()
    if flag.status == "closed":
        return []
    lp = p.levels[flag.level]
    out: list[OversightNotice] = []
    if lp.inform_county_at_once and flag.county_informed_at is None:
        out.append(OversightNotice(Tier.COUNTY, p.tier_roles[Tier.COUNTY], "red_flag_oversight"))
    if (lp.inform_city_after is not None and flag.city_informed_at is None
            and now - flag.opened_at > lp.inform_city_after):
        out.append(OversightNotice(Tier.CITY, p.tier_roles[Tier.CITY], "red_flag_open_too_long"))
    return out
