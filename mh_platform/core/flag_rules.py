"""Flag rules: turn screening results, concerns and the model's watch signal into flag evidence.

Rules (levels from ``flag_policy.toml``, validated by ``parse_flag_policy``):

- band: the response's band maps to a level (policy per instrument and band id; an instrument the
  policy does not list uses its definition file's band ``concern``).
- critical: a fired critical item raises at least its configured level (or the instrument file's
  level if higher; unconfigured → ``critical_default``, red). Critical items count even on an
  invalid or low-quality response.
- critical_unanswered: an asked-but-unanswered critical item raises its configured level (default
  orange) so it is never silent.
- deterioration: change since the previous screening of at least the instrument's reliable-change
  value in the worse direction AND a different band (bands are ordered by score, so it is a worse one).
- concern: urgency immediate / soon / routine → red / orange / yellow.
- model: the risk model's watch signal gives at most yellow, and such a flag never leaves the school.

``merge_into_open_flag`` folds evidence into the open flag: the level only goes up by itself.
Evidence ``detail`` holds codes and numbers only, never free text.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from mh_platform.core.errors import ValidationFailed
from mh_platform.core.escalation import parse_duration
from mh_platform.core.types import LEVEL_RANK, Level, max_level


class EvidenceSource(StrEnum):
    """Where a piece of evidence came from (stored in flag_evidence.source)."""

    BAND = "band"
    CONCERN = "concern"
    CRITICAL = "critical"
    CRITICAL_UNANSWERED = "critical_unanswered"
    DETERIORATION = "deterioration"
    MODEL = "model"


class Urgency(StrEnum):
    """How urgent a concern is, as the reporter judged it."""

    IMMEDIATE = "immediate"
    SOON = "soon"
    ROUTINE = "routine"


@dataclass(frozen=True)
class Evidence:
    """One reason for a flag: source, level, a stable reason code, and codes/numbers only in ``detail``."""

    source: EvidenceSource
    level: Level
    reason_code: str
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ScreeningEvidence:
    """What the scoring engine reports for one response, plus the student's previous score on the instrument.

    ``total``/``band_id`` are None on an invalid form; ``critical`` lists fired critical item numbers,
    ``critical_unanswered`` the asked-but-unanswered ones; ``critical_levels`` the instrument file's
    level for each of both (optional: the rules take the higher of it and the policy's);
    ``band_concern`` is the instrument file's ``concern`` for the band (used unless the policy names
    the band, ``band_level``).
    ``quality_ok`` False (marked for re-administration) never suppresses evidence: a careless-looking form
    can still be a child in trouble (ml.md §4). It only annotates the evidence (``detail["quality"]``) so
    the counsellor re-administers or interviews.
    """

    instrument_id: str
    band_id: str | None
    total: float | None
    critical: Sequence[int] = ()
    critical_unanswered: Sequence[int] = ()
    previous_total: float | None = None
    rc_value: float | None = None
    previous_band_id: str | None = None
    band_concern: Level | None = None
    critical_levels: Mapping[int, Level] = field(default_factory=dict)
    higher_is_worse: bool = True
    quality_ok: bool = True


@dataclass(frozen=True)
class ConcernEvidence:
    """A concern logged by a monitor or teacher: category code and urgency (the note stays encrypted elsewhere)."""

    urgency: Urgency
    category: str = "other"


@dataclass(frozen=True)
class WatchSignal:
    """The risk model's output for one student: watch or not, with the probability and model version."""

    watch: bool
    probability: float | None = None
    model_version: str = ""


@dataclass(frozen=True)
class InstrumentFlagPolicy:
    """Per-instrument levels: band id → level (None: deliberately not flagged), critical item → level,
    unanswered critical item → level. A band not in ``bands`` keeps its instrument file's concern."""

    bands: Mapping[str, Level | None] = field(default_factory=dict)
    critical: Mapping[int, Level] = field(default_factory=dict)
    critical_unanswered: Mapping[int, Level] = field(default_factory=dict)
    deterioration: Level | None = None


@dataclass(frozen=True)
class ClusterPolicy:
    """Cluster alert thresholds: this many flags of these levels in one class / school within ``window``."""

    levels: frozenset[Level] = frozenset({Level.RED, Level.ORANGE})
    window: timedelta = timedelta(days=14)
    class_threshold: int = 3
    school_threshold: int = 5

    @property
    def level_values(self) -> list[str]:
        """The levels a cluster counts, as stored in ``flag.level`` (sorted: a stable SQL ``IN`` list)."""
        return sorted(lv.value for lv in self.levels)


@dataclass(frozen=True)
class FlagPolicy:
    """The whole flag policy; build it with ``parse_flag_policy`` (validated)."""

    instruments: Mapping[str, InstrumentFlagPolicy]
    critical_default: Level = Level.RED
    critical_unanswered_default: Level = Level.ORANGE
    deterioration: Level = Level.YELLOW
    model_watch: Level = Level.YELLOW
    concern_urgency: Mapping[Urgency, Level] = field(
        default_factory=lambda: {Urgency.IMMEDIATE: Level.RED, Urgency.SOON: Level.ORANGE, Urgency.ROUTINE: Level.YELLOW}
    )
    cluster: ClusterPolicy = field(default_factory=ClusterPolicy)


# ----------------------------------------------------------------------------- parsing


def _level(value: Any, where: str, errors: list[dict]) -> Level:
    try:
        return Level(value)
    except ValueError:
        errors.append({"field": where, "error": f"unknown level {value!r}"})
        return Level.RED


def _item_map(raw: Mapping[str, Any], where: str, errors: list[dict]) -> dict[int, Level]:
    out: dict[int, Level] = {}
    for k, v in raw.items():
        try:
            n = int(k)
        except ValueError:
            errors.append({"field": where, "error": f"item number expected, got {k!r}"})
            continue
        if n < 1:
            errors.append({"field": where, "error": f"item number must be >= 1, got {n}"})
        out[n] = _level(v, f"{where}.{k}", errors)
    return out


def parse_flag_policy(data: Mapping[str, Any] | str) -> FlagPolicy:
    """Validate a flag policy (TOML text or parsed mapping); all problems listed in ValidationFailed.errors."""
    if isinstance(data, str):
        try:
            data = tomllib.loads(data)
        except tomllib.TOMLDecodeError as exc:
            raise ValidationFailed(f"flag policy is not TOML: {exc}") from exc
    errors: list[dict] = []
    if data.get("format") != 1:
        errors.append({"field": "format", "error": "must be 1"})
    d = data.get("defaults", {})
    model_watch = _level(d.get("model_watch", "yellow"), "defaults.model_watch", errors)
    if LEVEL_RANK[model_watch] > LEVEL_RANK[Level.YELLOW]:
        errors.append({"field": "defaults.model_watch", "error": "the model's watch signal is at most yellow"})
    urg_raw = data.get("concern_urgency", {})
    urgency: dict[Urgency, Level] = {}
    for u in Urgency:
        if u.value not in urg_raw:
            errors.append({"field": f"concern_urgency.{u.value}", "error": "missing"})
        else:
            urgency[u] = _level(urg_raw[u.value], f"concern_urgency.{u.value}", errors)
    instruments: dict[str, InstrumentFlagPolicy] = {}
    for iid, raw in data.get("instruments", {}).items():
        w = f"instruments.{iid}"
        det = raw.get("deterioration")
        instruments[iid] = InstrumentFlagPolicy(
            bands={b: None if v == "none" else _level(v, f"{w}.bands.{b}", errors)
                   for b, v in raw.get("bands", {}).items()},
            critical=_item_map(raw.get("critical", {}), f"{w}.critical", errors),
            critical_unanswered=_item_map(raw.get("critical_unanswered", {}), f"{w}.critical_unanswered", errors),
            deterioration=None if det is None else _level(det, f"{w}.deterioration", errors),
        )
    c = data.get("cluster", {})
    cluster = ClusterPolicy(
        levels=frozenset(_level(x, "cluster.levels", errors) for x in c.get("levels", ["red", "orange"])),
        window=_cluster_window(c.get("window", "14d"), errors),
        class_threshold=_positive_int(c.get("class_threshold", 3), "cluster.class_threshold", errors),
        school_threshold=_positive_int(c.get("school_threshold", 5), "cluster.school_threshold", errors),
    )
    policy = FlagPolicy(
        instruments=instruments,
        critical_default=_level(d.get("critical_default", "red"), "defaults.critical_default", errors),
        critical_unanswered_default=_level(
            d.get("critical_unanswered_default", "orange"), "defaults.critical_unanswered_default", errors),
        deterioration=_level(d.get("deterioration", "yellow"), "defaults.deterioration", errors),
        model_watch=model_watch,
        concern_urgency=urgency,
        cluster=cluster,
    )
    if errors:
        raise ValidationFailed("invalid flag policy", errors)
    return policy


def _cluster_window(value: Any, errors: list[dict]) -> timedelta:
    try:
        return parse_duration(value)
    except ValidationFailed:
        errors.append({"field": "cluster.window", "error": f"bad duration {value!r}"})
        return timedelta(days=14)


def _positive_int(value: Any, where: str, errors: list[dict]) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        errors.append({"field": where, "error": "must be a positive integer"})
        return 1
    return value


@cache
def default_flag_policy() -> FlagPolicy:
    """The packaged default flag policy, parsed once."""
    text = resources.files("mh_platform.core").joinpath("flag_policy.toml").read_text(encoding="utf-8")
    return parse_flag_policy(text)


# ----------------------------------------------------------------------------- rules


def band_level(instrument_id: str, band_id: str | None, band_concern: Level | None,
               policy: FlagPolicy | None = None) -> Level | None:
    """The flag level of a scored band: the policy's level for that band if it names it ("none":
    deliberately not flagged), else the ``concern`` the instrument file gives the band. So a band
    from a cut-off set the policy does not list (a deployment's alternative set) is never silent."""
    if band_id is None:
        return None
    ip = (policy or default_flag_policy()).instruments.get(instrument_id)
    if ip is not None and band_id in ip.bands:
        return ip.bands[band_id]
    return band_concern


def screening_evidence(s: ScreeningEvidence, policy: FlagPolicy | None = None) -> list[Evidence]:
    """All evidence in one scored response (band, critical, unanswered critical, deterioration)."""
    p = policy or default_flag_policy()
    ip = p.instruments.get(s.instrument_id, InstrumentFlagPolicy())
    out: list[Evidence] = []
    base: dict = {"instrument": s.instrument_id}
    if not s.quality_ok:
        base["quality"] = "readminister"
    if s.band_id is not None:
        level = band_level(s.instrument_id, s.band_id, s.band_concern, p)
        if level is not None:
            out.append(Evidence(EvidenceSource.BAND, level, f"band:{s.instrument_id}:{s.band_id}",
                                {**base, "band": s.band_id, "total": s.total}))
    for item in sorted(set(s.critical)):
        level = max_level(ip.critical.get(item, p.critical_default), s.critical_levels.get(item))
        assert level is not None
        out.append(Evidence(EvidenceSource.CRITICAL, level, f"critical:{s.instrument_id}:{item}",
                            {**base, "item": item}))
    for item in sorted(set(s.critical_unanswered) - set(s.critical)):
        level = max_level(ip.critical_unanswered.get(item, p.critical_unanswered_default), s.critical_levels.get(item))
        assert level is not None
        out.append(Evidence(EvidenceSource.CRITICAL_UNANSWERED, level,
                            f"critical_unanswered:{s.instrument_id}:{item}", {**base, "item": item}))
    det = deterioration_evidence(s, p)
    if det is not None:
        out.append(det)
    return out


def reliable_deterioration(s: ScreeningEvidence) -> bool:
    """Change in the worse direction of at least the RC value, and a band crossing (so into a worse band)."""
    if None in (s.total, s.previous_total, s.rc_value, s.band_id, s.previous_band_id):
        return False
    assert s.total is not None and s.previous_total is not None and s.rc_value is not None
    change = (s.total - s.previous_total) if s.higher_is_worse else (s.previous_total - s.total)
    return change >= s.rc_value and s.band_id != s.previous_band_id


def deterioration_evidence(s: ScreeningEvidence, policy: FlagPolicy | None = None) -> Evidence | None:
    """Evidence of reliable deterioration since the last screening, or None."""
    p = policy or default_flag_policy()
    if not reliable_deterioration(s):
        return None
    ip = p.instruments.get(s.instrument_id)
    level = (ip.deterioration if ip is not None else None) or p.deterioration
    assert s.total is not None and s.previous_total is not None
    return Evidence(EvidenceSource.DETERIORATION, level, f"deterioration:{s.instrument_id}",
                    {"instrument": s.instrument_id, "from_band": s.previous_band_id, "to_band": s.band_id,
                     "change": s.total - s.previous_total, "rc": s.rc_value,
                     **({} if s.quality_ok else {"quality": "readminister"})})


def concern_evidence(c: ConcernEvidence, policy: FlagPolicy | None = None) -> Evidence:
    """A concern's level comes from its urgency (immediate/soon/routine → red/orange/yellow by default)."""
    p = policy or default_flag_policy()
    urgency = Urgency(c.urgency)
    return Evidence(EvidenceSource.CONCERN, p.concern_urgency[urgency], f"concern:{urgency.value}",
                    {"category": c.category, "urgency": urgency.value})


def model_evidence(w: WatchSignal, policy: FlagPolicy | None = None) -> Evidence | None:
    """The watch signal as evidence (at most yellow), or None when the model does not flag."""
    if not w.watch:
        return None
    p = policy or default_flag_policy()
    level = p.model_watch if LEVEL_RANK[p.model_watch] <= LEVEL_RANK[Level.YELLOW] else Level.YELLOW
    detail: dict[str, Any] = {"model_version": w.model_version}
    if w.probability is not None:
        detail["probability"] = round(w.probability, 4)
    return Evidence(EvidenceSource.MODEL, level, "model:watch", detail)


def evidence_level(evidence: Iterable[Evidence]) -> Level | None:
    """The most severe level among ``evidence`` (None when empty)."""
    level: Level | None = None
    for e in evidence:
        level = max_level(level, e.level)
    return level


def merge_into_open_flag(current_level: Level | None, evidence: Iterable[Evidence]) -> Level | None:
    """New level of the student's open flag: never lower than ``current_level`` (None = no open flag yet)."""
    return max_level(current_level, evidence_level(evidence))


def is_watch_only(evidence: Iterable[Evidence]) -> bool:
    """True when every piece of evidence is the model's watch signal (such a flag stays at the school)."""
    sources = [e.source for e in evidence]
    return bool(sources) and all(s == EvidenceSource.MODEL for s in sources)
