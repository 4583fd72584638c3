"""The generic scoring engine: any instrument definition, one response or a million at a time.

Pure (standard library and numpy). Rules, all taken from the definition file:

* Answers are the **printed** option values of the official form (``{"1": 2, "9": None}``), or
  ``"yes"``/``"no"``/``"refused"`` for yes/no items; None or absent means unanswered. Reverse keying
  and scoring variants are applied here, never to stored answers. Answers are never mutated.
* Invalid input (unknown item, a value that is not an option, wrong type) yields ``errors`` and
  status ``invalid`` — never an exception. Critical items are still evaluated on every *valid*
  answer; a critical item whose value is invalid counts as unanswered.
* Skip logic: an item whose skip condition holds and that was left blank is not missing; it is
  scored as the skip's printed ``value`` (K10: 1) or left out. An answer given anyway is used.
* Missing items: up to ``max_missing`` → prorated, ``round_half_up(sum × n / n_answered)`` in exact
  integer arithmetic; more → ``invalid`` with no total and no band.
* Critical items are evaluated on the raw answer, before and independently of the total, never
  imputed; an asked-but-unanswered critical item is reported in ``critical_unanswered``.
* Short forms (PHQ-2, GAD-2, K6) map by item key and are not prorated.

``score_many`` is the vectorised equivalent of ``score`` row by row (a property test checks it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from mh_platform.core.instruments import (
    YES_NO_CODES,
    Band,
    Condition,
    Instrument,
    Item,
    Variant,
    max_concern,
)
from mh_platform.core.types import LEVEL_RANK, Level

COMPLETE = "complete"
PRORATED = "prorated"
INVALID = "invalid"
STATUS_CODES: tuple[str, str, str] = (COMPLETE, PRORATED, INVALID)  # index = code in BatchScores.status

_EMPTY: tuple = ()
_NO_MAPPING: Mapping[Any, Any] = MappingProxyType({})  # shared read-only empty mapping: one object fewer per result
_RANK_LEVEL = {rank: level for level, rank in LEVEL_RANK.items()}


def round_half_up(numerator: int, denominator: int) -> int:
    """floor(numerator / denominator + 1/2), exactly, for integers (denominator > 0)."""
    return (2 * numerator + denominator) // (2 * denominator)


@dataclass(frozen=True)
class SubscaleResult:
    score: int | None
    positive: bool | None
    band: Band | None = None


@dataclass(frozen=True)
class ScoreResult:
    instrument_id: str
    instrument_version: str
    variant: str
    cutoff_set: str
    total: int | None
    status: str  # complete | prorated | invalid
    band: Band | None
    subscales: Mapping[str, SubscaleResult]
    critical: list[int]  # item numbers fired
    critical_unanswered: list[int]
    short_forms: Mapping[str, tuple[int | None, bool | None]]
    notes: list[str]
    errors: list[str]
    critical_levels: Mapping[int, Level] = field(default_factory=dict)  # fired and unanswered items

    @property
    def concern(self) -> Level | None:
        """The most severe of the band's concern and every critical level (fired or unanswered)."""
        return max_concern([self.band.concern if self.band else None, *self.critical_levels.values()])

    def to_json(self) -> dict[str, Any]:
        """The object ``mhp instruments score`` writes, key order as in the issue."""
        b = self.band
        return {
            "instrument": self.instrument_id,
            "total": self.total,
            "status": self.status,
            "band": None if b is None else {"id": b.id, "en": b.label_en, "zh": b.label_zh},
            "subscales": {k: {"score": v.score, "positive": v.positive} for k, v in self.subscales.items()},
            "critical": list(self.critical),
            "critical_unanswered": list(self.critical_unanswered),
            "short_forms": {k: {"score": s, "positive": p} for k, (s, p) in self.short_forms.items()},
            "errors": list(self.errors),
        }


_new = object.__new__
_setattr = object.__setattr__


def _result(instrument_id: str, instrument_version: str, variant: str, cutoff_set: str, total: int | None,
            status: str, band: Band | None, subscales: Mapping[str, SubscaleResult], critical: list[int],
            critical_unanswered: list[int], short_forms: Mapping[str, tuple[int | None, bool | None]],
            notes: list[str], errors: list[str], critical_levels: Mapping[int, Level]) -> ScoreResult:
    """Build a ScoreResult without the frozen dataclass __init__ (14 guarded setattrs cost microseconds)."""
    r = _new(ScoreResult)
    _setattr(r, "__dict__", {
        "instrument_id": instrument_id, "instrument_version": instrument_version, "variant": variant,
        "cutoff_set": cutoff_set, "total": total, "status": status, "band": band, "subscales": subscales,
        "critical": critical, "critical_unanswered": critical_unanswered, "short_forms": short_forms,
        "notes": notes, "errors": errors, "critical_levels": critical_levels})
    return r


def _subresult(score: int | None, positive: bool | None, band: Band | None) -> SubscaleResult:
    r = _new(SubscaleResult)
    _setattr(r, "__dict__", {"score": score, "positive": positive, "band": band})
    return r


# --------------------------------------------------------------------------- compiled plan


class _Plan:
    """Everything ``score`` needs, precomputed once per (instrument, variant, cut-off set)."""

    __slots__ = ("inst", "variant", "cutoff", "key_map", "scores", "types", "total_items", "skips",
                 "unanswered", "band_lut", "lo", "mult", "max_missing", "prorate", "crits", "subs",
                 "shorts", "relevant_skips", "total_subs", "n_total", "pairs", "total_sub_items")

    def __init__(self, inst: Instrument, variant: Variant, cutoff_id: str) -> None:
        self.inst = inst
        self.variant = variant
        cut = inst.cutoff_set(cutoff_id)
        self.cutoff = cut
        km: dict[Any, int] = {}
        for it in inst.items:
            km[it.number] = it.number
            km[str(it.number)] = it.number
        self.key_map = km
        off = variant.item_score_offset
        self.scores: dict[int, dict[Any, int]] = {
            it.number: {o.value: _option_score(it, o.value, off) for o in it.options} for it in inst.items}
        self.types = {it.number: (str if it.kind == "yes_no" else int) for it in inst.items}
        # (answer key, raw value) -> (item number, item score): one look-up validates and scores
        in_total = set(inst.total_items)
        self.pairs = {(k, v): (n, s, s if n in in_total else 0, 1 if n in in_total else 0)
                      for k, n in km.items() for v, s in self.scores[n].items()}
        self.total_items = inst.total_items
        self.total_subs = inst.total_from_subscales
        self.total_sub_items = tuple(n for s in inst.subscales if s.id in self.total_subs for n in s.items)
        # which items' skip/unanswered rules matter for a score or a critical result
        relevant = set(inst.total_items) | {c.item for c in inst.critical_items}
        for s in inst.subscales:
            relevant |= set(s.items)
        for sf in inst.short_forms:
            relevant |= set(sf.items)
        self.skips: dict[int, tuple[Condition, int | None]] = {}
        for it in inst.items:
            if it.skip is not None and it.number in relevant:
                sv = None if it.skip.value is None else self.scores[it.number][it.skip.value]
                self.skips[it.number] = (it.skip.when, sv)
        self.relevant_skips = tuple(self.skips)
        self.unanswered = {it.number: self.scores[it.number][it.unanswered_value]
                           for it in inst.items if it.unanswered_value is not None}
        lo, hi = inst.total_range(variant.id)
        self.lo = lo
        self.band_lut = tuple(cut.band_for(t) for t in range(lo, hi + 1))
        self.mult = variant.total_multiplier
        self.max_missing = inst.missing.max_missing
        self.prorate = inst.missing.method == "prorate"
        self.n_total = len(inst.total_items)
        self.crits = tuple((c.item, dict(c.levels), c.unanswered_level) for c in inst.critical_items)
        subs = []
        for s in inst.subscales:
            over = cut.subscales.get(s.id)
            pos_at = over.positive_at if over is not None and over.positive_at is not None else s.positive_at
            bands = over.bands if over is not None and over.bands is not None else s.bands
            if bands:
                slo, shi = inst.subscale_range(s.id, variant)
                blut = tuple(next((b for b in bands if b.min <= t <= b.max), None) for t in range(slo, shi + 1))
            else:
                slo, blut = 0, ()
            subs.append((s.id, s.items, s.from_subscales, s.missing.max_missing, s.missing.method == "prorate",
                         pos_at, s.positive_below, blut, slo))
        self.subs = tuple(subs)
        shorts = []
        for sf in inst.short_forms:
            v = inst.variant(sf.variant) if sf.variant else variant
            sc = {n: {o.value: _option_score(inst.item(n), o.value, v.item_score_offset)
                      for o in inst.item(n).options}
                  for n in sf.items}
            skipsc: dict[int, int] = {}
            for n in sf.items:
                it = inst.item(n)
                if it.skip is not None and it.skip.value is not None:
                    skipsc[n] = sc[n][it.skip.value]
            shorts.append((sf.id, sf.items, sc, sf.positive_at, skipsc))
        self.shorts = tuple(shorts)


def _option_score(it: Item, value: Any, offset: int) -> int:
    """``item_score`` of one of the item's own options, which always has a score."""
    s = it.item_score(value, offset)
    if s is None:
        raise ValueError(f"item {it.number}: option {value!r} has no score")
    return s


def _plan(inst: Instrument, variant: str | None, cutoff_set: str | None) -> _Plan:
    key = ("plan", variant, cutoff_set)
    p = inst._cache.get(key)
    if p is None:
        v = inst.variant(variant)
        if cutoff_set is None:
            cid = inst.cutoff_set(None, v.id).id
        else:
            c = inst.cutoff_set(cutoff_set)
            if variant is None:
                v = inst.variant(c.variant)  # a cut-off set implies its scale
            elif c.variant != v.id:
                from mh_platform.core.errors import ValidationFailed

                raise ValidationFailed(f"{inst.id}: cut-off set {c.id!r} is for variant {c.variant!r}, not {v.id!r}")
            cid = c.id
        p = _Plan(inst, v, cid)
        inst._cache[key] = p
    return p


def _pos(score: int | None, pos_at: int | None, pos_below: int | None, band: Band | None) -> bool | None:
    if score is None:
        return None
    if pos_at is not None:
        return score >= pos_at
    if pos_below is not None:
        return score < pos_below
    if band is not None:
        return band.concern is not None
    return None


def unanswered_items(inst: Instrument, raw: Mapping[int, Any]) -> list[int]:
    """The items a respondent was asked but left blank: not answered, and not legitimately skipped
    by the instrument's skip logic (K10 items 3 and 6 after "none of the time"; ASQ Q5 after four
    "no"). ``raw``: item number → the value given (printed option value, or "yes"/"no"/"refused")."""
    return [it.number for it in inst.items
            if raw.get(it.number) is None and not (it.skip is not None and it.skip.when.holds(raw))]


# --------------------------------------------------------------------------- single response


def _sum_items(items: tuple[int, ...], got: dict[int, int], skipped: dict[int, int | None],
               unans: Mapping[int, int], notes: list[str]) -> tuple[int, int, int]:
    """(sum, answered, expected) over items, honouring skip logic and policy values for unanswered items."""
    s = answered = expected = 0
    for n in items:
        v = got.get(n)
        if v is not None:
            s += v
            answered += 1
            expected += 1
        elif n in skipped:
            sv = skipped[n]
            if sv is not None:
                s += sv
                answered += 1
                expected += 1
        elif n in unans:
            s += unans[n]
            answered += 1
            expected += 1
            notes.append(f"item {n} unanswered: scored by policy as its unanswered value")
        else:
            expected += 1
    return s, answered, expected


def score(instrument: Instrument, answers: Mapping[Any, Any], *, variant: str | None = None,
          cutoff_set: str | None = None) -> ScoreResult:
    """Score one response. See the module docstring for the rules."""
    p = instrument._cache.get(("plan", variant, cutoff_set)) or _plan(instrument, variant, cutoff_set)
    errors: list[str] = []
    notes: list[str] = []
    raw: dict[int, Any] = {}  # item number -> valid raw answer
    got: dict[int, int] = {}  # item number -> item score (reverse keying and variant applied)
    if type(answers) is not dict and not isinstance(answers, Mapping):
        errors.append(f"answers must be an object mapping item numbers to values, got {type(answers).__name__}")
        answers = {}
    pairs = p.pairs
    key_map = p.key_map
    s_total = n_total = 0  # running sum and count over the total's items (common case)
    for k, v in answers.items():
        if v is None:
            if type(k) is bool or k not in key_map:
                errors.append(f"unknown item {k!r}")
            continue
        tv = type(v)
        if (tv is int or tv is str) and type(k) is not bool:
            hit = pairs.get((k, v))
            if hit is not None:
                n, sc, st, ct = hit  # item, score, its share of the total's sum and count
                if n in raw:
                    errors.append(f"item {n} given twice")
                raw[n] = v
                got[n] = sc
                s_total += st
                n_total += ct
                continue
        n = key_map.get(k) if type(k) is not bool else None
        if n is None:
            errors.append(f"unknown item {k!r}")
        else:
            errors.append(f"item {n}: {v!r} is not an option ({', '.join(repr(o) for o in p.scores[n])})")

    # skip logic, only for items whose skip matters to a score or a critical result
    skipped: dict[int, int | None] = {}
    if p.relevant_skips:
        for n in p.relevant_skips:
            cond, sv = p.skips[n]
            if cond.holds(raw):
                if n in raw:
                    notes.append(f"item {n} answered although its skip rule applies; the answer is used")
                else:
                    skipped[n] = sv

    # critical items: raw answers only, never imputed
    critical: list[int] = []
    unanswered: list[int] = []
    clevels: dict[int, Level] = {}
    for n, levels, ulevel in p.crits:
        v = raw.get(n)
        if v is None:
            if n not in skipped:
                unanswered.append(n)
                clevels[n] = ulevel
        else:
            lv = levels.get(v)
            if lv is not None:
                critical.append(n)
                clevels[n] = lv

    if errors:
        return _result(instrument.id, instrument.version, p.variant.id, p.cutoff.id, None, INVALID, None,
                       {sub[0]: _subresult(None, None, None) for sub in p.subs},
                       critical, unanswered, {sf[0]: (None, None) for sf in p.shorts}, notes, errors, clevels)

    total: int | None = None
    status = INVALID
    unans = p.unanswered
    subres: dict[str, SubscaleResult] = {}
    if p.subs:
        for sid, items, from_subs, maxm, prorate, pos_at, pos_below, blut, slo in p.subs:
            if from_subs:
                parts = [subres[x].score for x in from_subs]
                sscore = None if None in parts else sum(parts)  # type: ignore[arg-type]
            else:
                s, answered, expected = _sum_items(items, got, skipped, unans, notes)
                miss = expected - answered
                if miss == 0:
                    sscore = s
                elif miss <= maxm and prorate and answered:
                    sscore = round_half_up(s * expected, answered)
                else:
                    sscore = None
            sb = blut[sscore - slo] if (sscore is not None and blut) else None
            subres[sid] = _subresult(sscore, _pos(sscore, pos_at, pos_below, sb), sb)

    if p.total_subs:
        parts = [subres[x].score for x in p.total_subs]
        _s, answered, expected = _sum_items(p.total_sub_items, got, skipped, unans, [])
        miss = expected - answered
        if None in parts or miss > p.max_missing:
            notes.append("a subscale of the total has no score: no total")
        else:
            total = sum(parts) * p.mult  # type: ignore[arg-type]
            status = PRORATED if miss else COMPLETE  # only the total's own items count
    else:
        if skipped or unans:
            s, answered, expected = _sum_items(p.total_items, got, skipped, unans, notes)
        else:  # the common case: summed while reading the answers
            s, answered, expected = s_total, n_total, p.n_total
        if answered == expected:
            total = s * p.mult
            status = COMPLETE
        elif expected - answered <= p.max_missing and p.prorate and answered:
            total = round_half_up(s * expected, answered) * p.mult
            status = PRORATED
            notes.append(f"prorated: {expected - answered} of {expected} items missing")
        else:
            notes.append(f"{expected - answered} of {expected} items missing "
                         f"(at most {p.max_missing} allowed): no total")
    band = None if total is None else p.band_lut[total - p.lo]

    sfres: dict[str, tuple[int | None, bool | None]] = {}
    for sid, items, sc, pos_at, skipsc in p.shorts:
        sf_score = 0
        for n in items:
            v = raw.get(n)
            if v is not None:
                sf_score += sc[n][v]
            elif n in skipped and n in skipsc:
                sf_score += skipsc[n]
            else:
                sfres[sid] = (None, None)  # an item missing: short forms are not prorated
                break
        else:
            sfres[sid] = (sf_score, sf_score >= pos_at)

    return _result(instrument.id, instrument.version, p.variant.id, p.cutoff.id, total, status, band,
                   subres or _NO_MAPPING, critical, unanswered, sfres, notes, errors, clevels or _NO_MAPPING)


# --------------------------------------------------------------------------- batch


def encode_value(item: Item, value: Any) -> float:
    """The batch-matrix code of one raw answer: the printed value, or YES_NO_CODES for yes/no items."""
    if value is None:
        return np.nan
    if item.kind == "yes_no":
        return float(YES_NO_CODES[value]) if type(value) is str and value in YES_NO_CODES else -1.0
    if type(value) is int:
        return float(value)
    return -1e9 if not isinstance(value, float) else value


def encode(instrument: Instrument, answers: Mapping[Any, Any]) -> np.ndarray:
    """One response as a batch-matrix row (NaN = unanswered). Unknown keys are ignored here."""
    row = np.full(instrument.n_items, np.nan)
    for k, v in answers.items():
        try:
            n = int(k)
        except (TypeError, ValueError):
            continue
        if 1 <= n <= instrument.n_items and v is not None:
            row[n - 1] = encode_value(instrument.item(n), v)
    return row


@dataclass(frozen=True)
class BatchScores:
    """Results of ``score_many``: one entry per row, as numpy arrays.

    ``total`` is float (NaN = no total); ``status`` holds indexes into STATUS_CODES; ``band`` holds
    indexes into ``cutoff.bands`` (-1 = none); ``critical`` / ``critical_unanswered`` are (n, c)
    boolean masks over ``critical_items``; subscale and short-form scores are float (NaN = none) with
    boolean ``*_positive`` arrays. ``invalid_value`` marks rows with a value that is not an option.
    """

    instrument: Instrument
    variant: str
    cutoff: Any
    total: np.ndarray
    status: np.ndarray
    band: np.ndarray
    critical_items: tuple[int, ...]
    critical: np.ndarray
    critical_unanswered: np.ndarray
    invalid_value: np.ndarray
    subscales: dict[str, np.ndarray]
    subscale_positive: dict[str, np.ndarray]
    short_forms: dict[str, np.ndarray]
    short_form_positive: dict[str, np.ndarray]
    critical_level: np.ndarray | None = None  # (n, c) LEVEL_RANK of a fired item's level, 0 = not fired

    def __len__(self) -> int:
        return int(self.total.shape[0])

    def concern_levels(self) -> list[str | None]:
        """Each row's ``ScoreResult.concern`` (as its value, or None): the most severe of the band's
        concern, the instrument file's level of every fired critical item and the unanswered level of
        every asked-but-unanswered one — for every row, whether or not it raises a flag."""
        bands = self.cutoff.bands
        ranks = np.array([LEVEL_RANK[b.concern] if b.concern is not None else 0 for b in bands] + [0], dtype=np.int8)
        rank = ranks[self.band]  # band -1 (none) → the trailing 0
        if self.critical_items:
            inst = self.instrument
            unans_rank = np.array([LEVEL_RANK[c.unanswered_level] for c in inst.critical_items], dtype=np.int8)
            if self.critical_level is not None:
                rank = np.maximum(rank, self.critical_level.max(axis=1))
            rank = np.maximum(rank, np.where(self.critical_unanswered, unans_rank, 0).max(axis=1))
        return [None if r == 0 else _RANK_LEVEL[r].value for r in rank.tolist()]

    def result(self, i: int) -> ScoreResult:
        """Row ``i`` as a ScoreResult (without notes; errors only say that a value was invalid)."""
        inst = self.instrument
        t = self.total[i]
        total = None if np.isnan(t) else int(t)
        b = int(self.band[i])
        band = self.cutoff.bands[b] if b >= 0 else None
        plan = _plan(inst, self.variant, self.cutoff.id)
        subres = {}
        for sid, _items, _from, _maxm, _pr, pos_at, pos_below, blut, slo in plan.subs:
            v = self.subscales[sid][i]
            sc = None if np.isnan(v) else int(v)
            sb = blut[sc - slo] if (sc is not None and blut) else None
            has_rule = pos_at is not None or pos_below is not None or bool(blut)
            pos = bool(self.subscale_positive[sid][i]) if (sc is not None and has_rule) else None
            subres[sid] = _subresult(sc, pos, sb)
        sfres = {}
        for sid in self.short_forms:
            v = self.short_forms[sid][i]
            sfres[sid] = (None, None) if np.isnan(v) else (int(v), bool(self.short_form_positive[sid][i]))
        crit = [n for j, n in enumerate(self.critical_items) if self.critical[i, j]]
        unans = [n for j, n in enumerate(self.critical_items) if self.critical_unanswered[i, j]]
        levels: dict[int, Level] = {}
        for j, (n, _lv, ul) in enumerate(plan.crits):
            if n in unans:
                levels[n] = ul
            elif n in crit and self.critical_level is not None:
                levels[n] = _RANK_LEVEL[int(self.critical_level[i, j])]
        errors = ["a value is not an option"] if self.invalid_value[i] else []
        return ScoreResult(inst.id, inst.version, self.variant, self.cutoff.id, total,
                           STATUS_CODES[int(self.status[i])], band, subres, crit, unans, sfres, [], errors, levels)


class _Col:
    """How one column's codes are validated and scored in the batch path."""

    __slots__ = ("lo", "hi", "dense", "valid", "scores", "affine", "a", "b")

    def __init__(self, codes_to_scores: dict[int, int]) -> None:
        self.lo, self.hi = min(codes_to_scores), max(codes_to_scores)
        w = self.hi - self.lo + 1
        self.dense = len(codes_to_scores) == w
        self.valid = np.zeros(w, dtype=bool)
        self.scores = np.zeros(w, dtype=np.int32)
        for c, sc in codes_to_scores.items():
            self.valid[c - self.lo] = True
            self.scores[c - self.lo] = sc
        # affine: score = a * code + b over the whole (dense) range
        self.a, self.b = 1, 0
        if w == 1:
            self.a, self.b = 0, int(self.scores[0])
        else:
            a_ = int(self.scores[1] - self.scores[0])
            b_ = int(self.scores[0]) - a_ * self.lo
            self.a, self.b = a_, b_
        self.affine = self.dense and all(int(self.scores[c - self.lo]) == self.a * c + self.b
                                         for c in range(self.lo, self.hi + 1))

    def lookup(self, rc: np.ndarray, table: np.ndarray) -> np.ndarray:
        """table[relative code]; rc must already be valid or masked afterwards (clipped for safety)."""
        return table[np.minimum(rc, self.hi - self.lo)]


class _BatchPlan:
    __slots__ = ("plan", "cols", "lo_row", "zero_lo", "w_row", "a_row", "b_row", "identity", "all_affine", "nondense",
                 "nonaffine", "skip_fill", "unans_fill", "total_cols", "band_lut", "crits", "subs", "shorts")

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        inst = plan.inst
        self.cols = [_Col({_code(it, o.value): plan.scores[it.number][o.value] for o in it.options})
                     for it in inst.items]
        # the batch path works on relative codes r = code - lo (0 .. width-1)
        self.lo_row = np.array([c.lo for c in self.cols], dtype=np.float64)
        self.zero_lo = all(c.lo == 0 for c in self.cols)
        widths = {c.hi - c.lo for c in self.cols}
        self.w_row: Any = widths.pop() if len(widths) == 1 else np.array([c.hi - c.lo for c in self.cols],
                                                                         dtype=np.int16)
        # affine score over relative codes: score = a * r + (a * lo + b)
        self.a_row = np.array([c.a if c.affine else 0 for c in self.cols], dtype=np.int16)
        self.b_row = np.array([(c.a * c.lo + c.b) if c.affine else 0 for c in self.cols], dtype=np.int16)
        self.all_affine = all(c.affine for c in self.cols)
        self.identity = self.all_affine and all(c.a == 1 and c.a * c.lo + c.b == 0 for c in self.cols)
        self.nondense = [j for j, c in enumerate(self.cols) if not c.dense]
        self.nonaffine = [j for j, c in enumerate(self.cols) if not c.affine]
        self.skip_fill = {n - 1: (cond, sv) for n, (cond, sv) in plan.skips.items()}
        self.unans_fill = {n - 1: sc for n, sc in plan.unanswered.items()}
        self.total_cols = _cols(plan.total_items)
        self.band_lut = np.array([plan.cutoff.bands.index(b) if b is not None else -1 for b in plan.band_lut]
                                 + [-1], dtype=np.int16)
        self.crits = []
        for n, levels, _u in plan.crits:
            it = inst.item(n)
            col = self.cols[n - 1]
            fire = np.zeros(col.hi - col.lo + 1, dtype=np.int8)  # LEVEL_RANK of the level, 0 = no fire
            for v, lv in levels.items():
                fire[_code(it, v) - col.lo] = LEVEL_RANK[lv]
            self.crits.append((n - 1, fire))
        self.subs = []
        for sid, items, from_subs, maxm, prorate, pos_at, pos_below, blut, slo in plan.subs:
            conc = (np.array([b is not None and b.concern is not None for b in blut] + [False])
                    if blut else None)
            self.subs.append((sid, _cols(items) if items else None, from_subs, maxm, prorate, pos_at,
                              pos_below, conc, slo))
        self.shorts = []
        for sid, items, sc, pos_at, skipsc in plan.shorts:
            parts = []
            for n in items:
                it = inst.item(n)
                col = self.cols[n - 1]
                table = np.zeros(col.hi - col.lo + 1, dtype=np.int32)
                for v, s_ in sc[n].items():
                    table[_code(it, v) - col.lo] = s_
                parts.append((n - 1, table, skipsc.get(n)))
            self.shorts.append((sid, parts, pos_at))


def _cols(items: tuple[int, ...]) -> list[int]:
    return [n - 1 for n in items]


def _row_sum(A: np.ndarray, cols: list[int]) -> np.ndarray:
    """Sum of the given columns per row, column by column (faster than a short-axis reduction)."""
    if not cols:
        return np.zeros(A.shape[0], dtype=np.int64)
    acc = A[:, cols[0]].astype(np.int64)
    for j in cols[1:]:
        acc += A[:, j]
    return acc


def _row_any(A: np.ndarray) -> np.ndarray:
    acc = A[:, 0].copy()
    for j in range(1, A.shape[1]):
        acc |= A[:, j]
    return acc


def _code(item: Item, value: Any) -> int:
    return YES_NO_CODES[value] if item.kind == "yes_no" else int(value)


def _cond_mask(cond: Condition, ci: np.ndarray, ok: np.ndarray, item: Any) -> np.ndarray:
    """Skip condition over the valid raw codes of a chunk."""
    if cond.op == "in":
        it = item(cond.item)
        j = cond.item - 1
        col = ci[:, j]
        m = np.zeros(ci.shape[0], dtype=bool)
        lo = min(_code(it, o.value) for o in it.options)
        for v in cond.values:
            m |= col == _code(it, v) - lo
        return m & ok[:, j]
    masks = [_cond_mask(c, ci, ok, item) for c in cond.children]
    out = masks[0].copy()
    for m in masks[1:]:
        if cond.op == "all":
            out &= m
        else:
            out |= m
    return out


def _batch_plan(inst: Instrument, variant: str | None, cutoff_set: str | None) -> _BatchPlan:
    key = ("batch", variant, cutoff_set)
    bp = inst._cache.get(key)
    if bp is None:
        bp = _BatchPlan(_plan(inst, variant, cutoff_set))
        inst._cache[key] = bp
    return bp


def _prorate(s: np.ndarray, answered: np.ndarray | int, expected: np.ndarray | int, max_missing: int,
             prorate: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(integer score, has-score mask, missing count) from integer sums, vectorised, exact half-up."""
    miss = np.asarray(expected - answered)
    if miss.ndim == 0:  # every row answered every item
        zeros = np.zeros(s.shape[0], dtype=np.int64)
        return s, zeros == 0, zeros
    complete = miss == 0
    if complete.all():
        return s, complete, miss
    ok = complete | ((miss <= max_missing) & prorate & (answered > 0))
    safe = np.where(answered > 0, answered, 1)
    num = np.where(complete, s, (2 * s * expected + safe) // (2 * safe))
    return num, ok, miss


def score_many(instrument: Instrument, matrix: np.ndarray, *, variant: str | None = None,
               cutoff_set: str | None = None, chunk: int = 32768) -> BatchScores:
    """Score an (n, n_items) matrix of raw answers (NaN = unanswered; yes/no coded by YES_NO_CODES).

    Same results as ``score`` row by row for total, status, band, subscales, short forms and
    critical items. Processed in chunks so that intermediates stay in cache.
    """
    X = np.asarray(matrix, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != instrument.n_items:
        raise ValueError(f"{instrument.id}: matrix must have shape (n, {instrument.n_items}), got {X.shape}")
    bp = _batch_plan(instrument, variant, cutoff_set)
    p = bp.plan
    n = X.shape[0]
    nc = len(p.crits)
    out: dict[str, np.ndarray] = {
        "total": np.empty(n), "status": np.empty(n, dtype=np.int8), "band": np.empty(n, dtype=np.int16),
        "crit": np.empty((n, nc), dtype=bool), "unans": np.empty((n, nc), dtype=bool),
        "invalid": np.empty(n, dtype=bool), "level": np.empty((n, nc), dtype=np.int8),
    }
    sub = {s[0]: np.empty(n) for s in p.subs}
    subpos = {s[0]: np.empty(n, dtype=bool) for s in p.subs}
    sf = {s[0]: np.empty(n) for s in p.shorts}
    sfpos = {s[0]: np.empty(n, dtype=bool) for s in p.shorts}
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        _score_chunk(bp, X[a:b], {k: v[a:b] for k, v in out.items()}, {k: v[a:b] for k, v in sub.items()},
                     {k: v[a:b] for k, v in subpos.items()}, {k: v[a:b] for k, v in sf.items()},
                     {k: v[a:b] for k, v in sfpos.items()})
    return BatchScores(instrument, p.variant.id, p.cutoff, out["total"], out["status"], out["band"],
                       tuple(c[0] for c in p.crits), out["crit"], out["unans"], out["invalid"],
                       sub, subpos, sf, sfpos, out["level"])


def _score_chunk(bp: _BatchPlan, X: np.ndarray, o: dict, o_sub: dict, o_subpos: dict, o_sf: dict,
                 o_sfpos: dict) -> None:
    p = bp.plan
    inst = p.inst
    m = X.shape[0]
    # relative codes r = value - lo; a value is valid when integral, 0 <= r <= width and an option
    Xs = X if bp.zero_lo else X - bp.lo_row
    with np.errstate(invalid="ignore"):
        ci = Xs.astype(np.uint8)  # NaN / negative / huge / fractional values fail the comparison below
    ok = ci == Xs
    ok &= ci <= bp.w_row
    for j in bp.nondense:
        ok[:, j] &= bp.cols[j].lookup(ci[:, j], bp.cols[j].valid)
    if ok.all():
        invalid_row = np.zeros(m, dtype=bool)
        any_invalid = False
        complete = True
    else:
        complete = False
        bad = ~ok
        bad &= ~np.isnan(X)
        any_invalid = bool(bad.any())
        invalid_row = _row_any(bad) if any_invalid else np.zeros(m, dtype=bool)
    o["invalid"][:] = invalid_row

    # item scores (0 where missing or invalid)
    if bp.identity:
        S = ci.astype(np.int16) if complete else np.where(ok, ci, np.int16(0))
    else:
        S = np.where(ok, ci * bp.a_row + bp.b_row, np.int16(0))
        for j in bp.nonaffine:
            c = bp.cols[j]
            S[:, j] = np.where(ok[:, j], c.lookup(ci[:, j], c.scores), 0)

    # skip logic and policy values for unanswered items
    filled = ok
    excluded = None
    skipped_cols: dict[int, np.ndarray] = {}
    if bp.skip_fill or bp.unans_fill:
        filled = ok.copy()
        for j, (cond, sv) in bp.skip_fill.items():
            cm = _cond_mask(cond, ci, ok, inst.item) & ~ok[:, j]
            skipped_cols[j] = cm
            if sv is None:
                if excluded is None:
                    excluded = np.zeros_like(ok)
                excluded[:, j] = cm
            else:
                S[:, j] = np.where(cm, sv, S[:, j])
                filled[:, j] |= cm
        for j, sv in bp.unans_fill.items():
            um = ~filled[:, j]
            if excluded is not None:
                um &= ~excluded[:, j]
            S[:, j] = np.where(um, sv, S[:, j])
            filled[:, j] |= um

    def sums(cols: list[int]) -> tuple[np.ndarray, np.ndarray | int, np.ndarray | int]:
        s = _row_sum(S, cols)
        n_cols = len(cols)
        if complete and filled is ok:
            return s, n_cols, n_cols
        answered = _row_sum(filled, cols)
        expected = n_cols if excluded is None else n_cols - _row_sum(excluded, cols)
        return s, answered, expected

    # subscales
    sub_scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for sid, cols, from_subs, maxm, prorate, pos_at, pos_below, conc, slo in bp.subs:
        if from_subs:
            sc = np.sum([sub_scores[x][0] for x in from_subs], axis=0)
            has = np.logical_and.reduce([sub_scores[x][1] for x in from_subs])
        else:
            if cols is None:
                raise ValueError(f"{inst.id}: subscale {sid} has neither items nor subscales")
            s, ans, exp = sums(cols)
            sc, has, _miss = _prorate(s, ans, exp, maxm, prorate)
        has = has & ~invalid_row
        sub_scores[sid] = (sc, has)
        o_sub[sid][:] = np.where(has, sc, np.nan)
        if pos_at is not None:
            pos = sc >= pos_at
        elif pos_below is not None:
            pos = sc < pos_below
        elif conc is not None:
            pos = conc[np.where(has, sc - slo, len(conc) - 1).astype(np.intp)]
        else:
            pos = np.zeros(m, dtype=bool)
        o_subpos[sid][:] = pos & has

    # total
    if p.total_subs:
        tot = np.sum([sub_scores[x][0] for x in p.total_subs], axis=0)
        has = np.logical_and.reduce([sub_scores[x][1] for x in p.total_subs])
        _s, ans, exp = sums([n - 1 for n in p.total_sub_items])
        miss = exp - ans
        has &= miss <= p.max_missing
        status = np.where(has, np.where(miss > 0, 1, 0), 2)
    else:
        s, ans, exp = sums(bp.total_cols)
        tot, has, miss = _prorate(s, ans, exp, p.max_missing, p.prorate)
        status = np.where(has, np.where(miss > 0, 1, 0), 2)
    if any_invalid:
        has = has & ~invalid_row
        status = np.where(invalid_row, 2, status)
    tot = tot * p.mult
    o["total"][:] = np.where(has, tot, np.nan)
    o["status"][:] = status
    o["band"][:] = bp.band_lut[np.where(has, tot - p.lo, len(bp.band_lut) - 1)]

    # critical items on valid raw answers, never imputed
    for k, (j, fire) in enumerate(bp.crits):
        okj = ok[:, j]
        rank = np.where(okj, bp.cols[j].lookup(ci[:, j], fire), 0)
        o["crit"][:, k] = rank > 0
        o["level"][:, k] = rank
        un = ~okj
        if j in skipped_cols:
            un &= ~skipped_cols[j]
        o["unans"][:, k] = un

    # short forms: no proration; a skipped item takes its skip value when it has one
    for sid, parts, pos_at in bp.shorts:
        acc = np.zeros(m, dtype=np.int64)
        has = ~invalid_row
        for j, table, skipval in parts:
            okj = ok[:, j]
            acc += np.where(okj, bp.cols[j].lookup(ci[:, j], table), 0)
            if skipval is not None and j in skipped_cols:
                acc += np.where(skipped_cols[j], skipval, 0)
                okj = okj | skipped_cols[j]
            has &= okj
        o_sf[sid][:] = np.where(has, acc, np.nan)
        o_sfpos[sid][:] = has & (acc >= pos_at)


# --------------------------------------------------------------------------- re-screening


def reliable_change(instrument: Instrument, previous: ScoreResult, current: ScoreResult) -> dict[str, Any]:
    """Change between two screenings of one student (Jacobson & Truax; ml.md §3).

    ``reliable`` when the change in the worse direction reaches the definition's reliable-change value
    (scaled to the result's variant); ``deterioration`` when it is reliable **and** the band moved in
    the worse direction (the clinically-significant criterion). Both results must use the same
    variant and cut-off set. Without a total on either side, nothing is reliable.
    """
    rc = instrument.reliable_change
    out: dict[str, Any] = {"delta": None, "reliable": False, "deterioration": False,
                           "threshold": None if rc is None else rc.value}
    if previous.variant != current.variant or previous.cutoff_set != current.cutoff_set:
        raise ValueError("compare results scored with the same variant and cut-off set")
    if rc is None or previous.total is None or current.total is None:
        return out
    scale = instrument.variant(current.variant).total_multiplier / instrument.default_variant.total_multiplier
    sign = 1 if rc.worse == "higher" else -1
    delta = current.total - previous.total
    worse_by = sign * delta
    threshold = rc.value * scale
    out.update(delta=delta, threshold=threshold, reliable=worse_by >= threshold)
    bands = instrument.cutoff_set(current.cutoff_set).bands
    if out["reliable"] and previous.band is not None and current.band is not None:
        moved = bands.index(current.band) - bands.index(previous.band)
        out["deterioration"] = sign * moved > 0
    return out
