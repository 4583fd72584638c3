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
from mh_platform.core.types import Level

COMPLETE = "complete"
PRORATED = "prorated"
INVALID = "invalid"
STATUS_CODES: tuple[str, str, str] = (COMPLETE, PRORATED, INVALID)  # index = code in BatchScores.status

_EMPTY: tuple = ()


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
        self.scores = {it.number: {o.value: it.item_score(o.value, off) for o in it.options} for it in inst.items}
        self.types = {it.number: (str if it.kind == "yes_no" else int) for it in inst.items}
        # (answer key, raw value) -> (item number, item score): one look-up validates and scores
        self.pairs = {(k, v): (n, s) for k, n in km.items() for v, s in self.scores[n].items()}
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
            sc = {n: {o.value: inst.item(n).item_score(o.value, v.item_score_offset) for o in inst.item(n).options}
                  for n in sf.items}
            skipsc = {}
            for n in sf.items:
                it = inst.item(n)
                if it.skip is not None and it.skip.value is not None:
                    skipsc[n] = sc[n][it.skip.value]
            shorts.append((sf.id, sf.items, sc, sf.positive_at, skipsc))
        self.shorts = tuple(shorts)


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
    for k, v in answers.items():
        if v is None:
            if type(k) is bool or k not in key_map:
                errors.append(f"unknown item {k!r}")
            continue
        tv = type(v)
        hit = pairs.get((k, v)) if (tv is int or tv is str) and type(k) is not bool else None
        if hit is None:
            n = key_map.get(k) if type(k) is not bool else None
            if n is None:
                errors.append(f"unknown item {k!r}")
            else:
                errors.append(f"item {n}: {v!r} is not an option ({', '.join(repr(o) for o in p.scores[n])})")
            continue
        n = hit[0]
        if n in raw:
            errors.append(f"item {n} given twice")
        raw[n] = v
        got[n] = hit[1]

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
    any_missing = False
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
                    any_missing = True
                else:
                    sscore = None
                    any_missing = True
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
            status = PRORATED if (miss or any_missing) else COMPLETE
    else:
        if skipped or unans:
            s, answered, expected = _sum_items(p.total_items, got, skipped, unans, notes)
        else:  # the common case, inlined
            s = answered = 0
            for n in p.total_items:
                v = got.get(n)
                if v is not None:
                    s += v
                    answered += 1
            expected = p.n_total
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
        s = 0
        for n in items:
            v = raw.get(n)
            if v is not None:
                s += sc[n][v]
            elif n in skipped and n in skipsc:
                s += skipsc[n]
            else:
                s = None
                break
        sfres[sid] = (s, None if s is None else s >= pos_at)

    return _result(instrument.id, instrument.version, p.variant.id, p.cutoff.id, total, status, band,
                   subres, critical, unanswered, sfres, notes, errors, clevels)


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

    def __len__(self) -> int:
        return int(self.total.shape[0])

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
        for n, lv, ul in plan.crits:
            if n in unans:
                levels[n] = ul
        errors = ["a value is not an option"] if self.invalid_value[i] else []
        return ScoreResult(inst.id, inst.version, self.variant, self.cutoff.id, total,
                           STATUS_CODES[int(self.status[i])], band, subres, crit, unans, sfres, [], errors, levels)


class _BatchPlan:
    __slots__ = ("plan", "lut", "base", "vmin", "width", "cond_cols", "skip_fill", "unans_fill",
                 "total_idx", "band_lut", "crit_cols", "crit_codes", "subs", "shorts", "total_sub_idx", "same")

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        inst = plan.inst
        # one flat lookup table: column j's code c maps to lut[base[j] + c - vmin[j]] (NaN = not an option)
        luts, base, vmin, width = [], [], [], []
        pos = 0
        for it in inst.items:
            codes = {_code(it, o.value): plan.scores[it.number][o.value] for o in it.options}
            lo, hi = min(codes), max(codes)
            arr = np.full(hi - lo + 1, np.nan)
            for c, s in codes.items():
                arr[c - lo] = s
            luts.append(arr)
            base.append(pos)
            vmin.append(lo)
            width.append(hi - lo + 1)
            pos += hi - lo + 1
        self.lut = np.concatenate([*luts, [np.nan]])  # last slot: "not an option"
        self.base = np.array(base, dtype=np.int64)
        self.vmin = np.array(vmin, dtype=np.float64)
        self.width = np.array(width, dtype=np.float64)
        self.same = len({(b_w, v) for b_w, v in zip(width, vmin, strict=True)}) == 1
        self.skip_fill = {n - 1: (cond, sv) for n, (cond, sv) in plan.skips.items()}
        self.unans_fill = {n - 1: s for n, s in plan.unanswered.items()}
        self.total_idx = np.array([n - 1 for n in plan.total_items], dtype=np.intp)
        lo = plan.lo
        self.band_lut = np.array([plan.cutoff.bands.index(b) if b is not None else -1 for b in plan.band_lut]
                                 + [-1], dtype=np.int16)
        self.crit_cols = [n - 1 for n, _l, _u in plan.crits]
        self.crit_codes = [np.array([_code(inst.item(n), v) for v in levels], dtype=np.float64)
                           for n, levels, _u in plan.crits]
        del lo


def _code(item: Item, value: Any) -> int:
    return YES_NO_CODES[value] if item.kind == "yes_no" else int(value)


def _cond_mask(cond: Condition, X: np.ndarray, item: Any) -> np.ndarray:
    if cond.op == "in":
        it = item(cond.item)
        col = X[:, cond.item - 1]
        m = np.zeros(X.shape[0], dtype=bool)
        for v in cond.values:
            m |= col == _code(it, v)
        return m
    masks = [_cond_mask(c, X, item) for c in cond.children]
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


def _prorate(s: np.ndarray, answered: np.ndarray, expected: np.ndarray, max_missing: int,
             prorate: bool) -> tuple[np.ndarray, np.ndarray]:
    """(score as float with NaN for none, missing count) from integer sums, vectorised."""
    miss = expected - answered
    ok = (miss == 0) | ((miss <= max_missing) & prorate & (answered > 0))
    safe = np.where(answered > 0, answered, 1)
    num = np.where(miss == 0, s, (2 * s * expected + safe) // (2 * safe))
    return np.where(ok, num, np.nan), miss


def score_many(instrument: Instrument, matrix: np.ndarray, *, variant: str | None = None,
               cutoff_set: str | None = None, chunk: int = 65536) -> BatchScores:
    """Score an (n, n_items) matrix of raw answers (NaN = unanswered; yes/no coded by YES_NO_CODES).

    Same results as ``score`` row by row for total, status, band, subscales, short forms and
    critical items. Processed in chunks so intermediates stay in cache.
    """
    X = np.asarray(matrix, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != instrument.n_items:
        raise ValueError(f"{instrument.id}: matrix must have shape (n, {instrument.n_items}), got {X.shape}")
    bp = _batch_plan(instrument, variant, cutoff_set)
    p = bp.plan
    n = X.shape[0]
    out_total = np.empty(n)
    out_status = np.empty(n, dtype=np.int8)
    out_band = np.empty(n, dtype=np.int16)
    nc = len(p.crits)
    out_crit = np.empty((n, nc), dtype=bool)
    out_unans = np.empty((n, nc), dtype=bool)
    out_invalid = np.empty(n, dtype=bool)
    sub_ids = [s[0] for s in p.subs]
    out_sub = {sid: np.empty(n) for sid in sub_ids}
    out_subpos = {sid: np.empty(n, dtype=bool) for sid in sub_ids}
    sf_ids = [s[0] for s in p.shorts]
    out_sf = {sid: np.empty(n) for sid in sf_ids}
    out_sfpos = {sid: np.empty(n, dtype=bool) for sid in sf_ids}
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        _score_chunk(bp, X[a:b], out_total[a:b], out_status[a:b], out_band[a:b], out_crit[a:b],
                     out_unans[a:b], out_invalid[a:b], {k: v[a:b] for k, v in out_sub.items()},
                     {k: v[a:b] for k, v in out_subpos.items()}, {k: v[a:b] for k, v in out_sf.items()},
                     {k: v[a:b] for k, v in out_sfpos.items()})
    return BatchScores(instrument, p.variant.id, p.cutoff, out_total, out_status, out_band,
                       tuple(c[0] for c in p.crits), out_crit, out_unans, out_invalid,
                       out_sub, out_subpos, out_sf, out_sfpos)


def _score_chunk(bp: _BatchPlan, X: np.ndarray, o_total: np.ndarray, o_status: np.ndarray,
                 o_band: np.ndarray, o_crit: np.ndarray, o_unans: np.ndarray, o_invalid: np.ndarray,
                 o_sub: dict, o_subpos: dict, o_sf: dict, o_sfpos: dict) -> None:
    p = bp.plan
    inst = p.inst
    m = X.shape[0]
    present = ~np.isnan(X)
    # position in the flat LUT; anything not an integral option lands on the NaN slot
    rel = X - bp.vmin
    with np.errstate(invalid="ignore"):
        ok = present & (rel >= 0) & (rel < bp.width) & (rel == np.floor(rel))
    idx = np.where(ok, rel, 0).astype(np.int64) + bp.base
    idx[~ok] = bp.lut.shape[0] - 1
    S = bp.lut[idx]  # item scores, NaN = missing or invalid
    valid = ~np.isnan(S)
    invalid_row = (present & ~valid).any(axis=1)
    o_invalid[:] = invalid_row
    Xv = np.where(valid, X, np.nan)  # valid raw codes only

    # skip logic and policy values for unanswered items
    filled = valid.copy()
    excluded = np.zeros_like(valid)
    skipped_cols: dict[int, np.ndarray] = {}
    for j, (cond, sv) in bp.skip_fill.items():
        cm = _cond_mask(cond, Xv, inst.item) & ~valid[:, j]
        skipped_cols[j] = cm
        if sv is None:
            excluded[:, j] |= cm
            S[:, j] = np.where(cm, 0.0, S[:, j])
        else:
            S[:, j] = np.where(cm, float(sv), S[:, j])
            filled[:, j] |= cm
    for j, sv in bp.unans_fill.items():
        um = ~filled[:, j] & ~excluded[:, j]
        S[:, j] = np.where(um, float(sv), S[:, j])
        filled[:, j] |= um
    Sz = np.where(filled, S, 0.0)

    def sums(cols: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = Sz[:, cols].sum(axis=1).astype(np.int64)
        answered = filled[:, cols].sum(axis=1)
        expected = len(cols) - excluded[:, cols].sum(axis=1)
        return s, answered, expected

    # subscales
    sub_scores: dict[str, np.ndarray] = {}
    any_missing = np.zeros(m, dtype=bool)
    for sid, items, from_subs, maxm, prorate, pos_at, pos_below, blut, slo in p.subs:
        if from_subs:
            sc = np.sum([sub_scores[x] for x in from_subs], axis=0)
        else:
            cols = np.array([i - 1 for i in items], dtype=np.intp)
            s, ans, exp = sums(cols)
            sc, miss = _prorate(s, ans, exp, maxm, prorate)
            any_missing |= miss > 0
        sc = np.where(invalid_row, np.nan, sc)
        sub_scores[sid] = sc
        o_sub[sid][:] = sc
        if pos_at is not None:
            pos = sc >= pos_at
        elif pos_below is not None:
            pos = sc < pos_below
        elif blut:
            conc = np.array([b is not None and b.concern is not None for b in blut] + [False])
            ii = np.where(np.isnan(sc), len(blut), sc - slo).astype(np.intp)
            pos = conc[ii]
        else:
            pos = np.zeros(m, dtype=bool)
        o_subpos[sid][:] = pos & ~np.isnan(sc)

    # total
    if p.total_subs:
        tot = np.sum([sub_scores[x] for x in p.total_subs], axis=0)
        cols = np.array([n - 1 for s in inst.subscales if s.id in p.total_subs for n in s.items], dtype=np.intp)
        _s, ans, exp = sums(cols)
        miss = exp - ans
        tot = np.where(miss > p.max_missing, np.nan, tot)
        status = np.where(np.isnan(tot), 2, np.where((miss > 0) | any_missing, 1, 0))
    else:
        s, ans, exp = sums(bp.total_idx)
        tot, miss = _prorate(s, ans, exp, p.max_missing, p.prorate)
        status = np.where(np.isnan(tot), 2, np.where(miss > 0, 1, 0))
    tot = tot * p.mult
    tot = np.where(invalid_row, np.nan, tot)
    status = np.where(invalid_row, 2, status)
    o_total[:] = tot
    o_status[:] = status
    nb = len(bp.band_lut) - 1
    bi = np.where(np.isnan(tot), nb, tot - p.lo).astype(np.intp)
    o_band[:] = bp.band_lut[bi]

    # critical items on valid raw answers
    for j, (col, codes) in enumerate(zip(bp.crit_cols, bp.crit_codes, strict=True)):
        x = Xv[:, col]
        fired = np.zeros(m, dtype=bool)
        for c in codes:
            fired |= x == c
        o_crit[:, j] = fired
        un = ~valid[:, col]
        if col in skipped_cols:
            un &= ~skipped_cols[col]
        o_unans[:, j] = un

    # short forms: no proration; skipped items take their skip value when they have one
    for sid, items, sc, pos_at, skipsc in p.shorts:
        acc = np.zeros(m)
        ok_all = ~invalid_row
        for n in items:
            it = inst.item(n)
            col = Xv[:, n - 1]
            v = np.full(m, np.nan)
            for val, s in sc[n].items():
                v = np.where(col == _code(it, val), float(s), v)
            if n in skipsc and (n - 1) in skipped_cols:
                v = np.where(skipped_cols[n - 1], float(skipsc[n]), v)
            ok_all &= ~np.isnan(v)
            acc += np.where(np.isnan(v), 0.0, v)
        res = np.where(ok_all, acc, np.nan)
        o_sf[sid][:] = res
        o_sfpos[sid][:] = ok_all & (res >= pos_at)
