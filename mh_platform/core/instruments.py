"""Screening instrument definitions: load, validate, and the frozen objects the engine scores with.

A definition is one TOML file in ``screening_instruments/`` (format described in that directory's
README.md). Loading validates it against ``schema.json`` and then checks what a schema cannot say:
items numbered 1..n in order, references that resolve, bands that cover the total range of their
variant with no gap or overlap, critical-item values that exist, licence rules for item text.

Pure: standard library, jsonschema and the project's core vocabulary only.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from mh_platform.core.errors import NotFound, ValidationFailed
from mh_platform.core.types import LEVEL_RANK, Level

ENV_DIR = "MHP_INSTRUMENTS_DIR"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "screening_instruments"
YES_NO_VALUES = ("yes", "no", "refused")
#: numeric codes of yes/no answers in the batch matrix of ``scoring.score_many``
YES_NO_CODES: dict[str, int] = {"no": 0, "yes": 1, "refused": 2}

Value = int | str


class InstrumentError(ValidationFailed):
    """A definition file that does not load: ``errors`` lists every problem found."""

    code = "instrument_invalid"


# --------------------------------------------------------------------------- objects


@dataclass(frozen=True, slots=True)
class Option:
    value: Value  # printed on the official form
    score: int  # before reverse keying / variant offset
    en: str | None = None
    zh: str | None = None
    loinc: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseSet:
    name: str
    kind: str  # "choice" | "yes_no"
    options: tuple[Option, ...]

    @property
    def min_score(self) -> int:
        return min(o.score for o in self.options)

    @property
    def max_score(self) -> int:
        return max(o.score for o in self.options)

    def option(self, value: Value) -> Option | None:
        for o in self.options:
            if o.value == value and type(o.value) is type(value):
                return o
        return None


@dataclass(frozen=True, slots=True)
class Condition:
    """``item`` raw answer in ``values`` (op "in"), or all/any of ``children``."""

    op: str  # "in" | "all" | "any"
    item: int = 0
    values: tuple[Value, ...] = ()
    children: tuple[Condition, ...] = ()

    def holds(self, raw: Mapping[int, Value]) -> bool:
        if self.op == "in":
            v = raw.get(self.item)
            return v is not None and v in self.values
        if self.op == "all":
            return all(c.holds(raw) for c in self.children)
        return any(c.holds(raw) for c in self.children)

    def items(self) -> set[int]:
        if self.op == "in":
            return {self.item}
        out: set[int] = set()
        for c in self.children:
            out |= c.items()
        return out


@dataclass(frozen=True, slots=True)
class Skip:
    when: Condition
    value: Value | None = None  # printed value assumed when skipped; None = left out
    source: str | None = None


@dataclass(frozen=True, slots=True)
class Item:
    number: int
    key: str
    response_set: ResponseSet
    en: str | None = None
    zh: str | None = None
    loinc: str | None = None
    scored: bool = True
    reverse: bool = False
    skip: Skip | None = None
    unanswered_value: Value | None = None
    note: str | None = None

    @property
    def kind(self) -> str:
        return self.response_set.kind

    @property
    def options(self) -> tuple[Option, ...]:
        return self.response_set.options

    def item_score(self, value: Value, offset: int = 0) -> int | None:
        """Score of a printed value after reverse keying and a variant offset; None if not an option."""
        o = self.response_set.option(value)
        if o is None:
            return None
        s = o.score
        if self.reverse:
            s = self.response_set.min_score + self.response_set.max_score - s
        return s + offset


@dataclass(frozen=True, slots=True)
class MissingRule:
    max_missing: int
    method: str  # "prorate" | "none"
    rounding: str = "half_up"
    source: str | None = None


NO_MISSING = MissingRule(0, "none")


@dataclass(frozen=True, slots=True)
class Variant:
    id: str
    en: str
    zh: str
    default: bool = False
    item_score_offset: int = 0
    total_multiplier: int = 1
    citation: str | None = None


STANDARD_VARIANT = Variant("standard", "Standard scoring", "标准计分", True)


@dataclass(frozen=True, slots=True)
class Band:
    id: str
    min: int
    max: int
    label_en: str
    label_zh: str
    concern: Level | None = None

    def contains(self, score: int) -> bool:
        return self.min <= score <= self.max


@dataclass(frozen=True, slots=True)
class SubscaleCut:
    positive_at: int | None = None
    bands: tuple[Band, ...] | None = None


@dataclass(frozen=True, slots=True)
class CutoffSet:
    id: str
    variant: str
    citation: str
    population: str
    bands: tuple[Band, ...]
    default: bool = False
    en: str | None = None
    zh: str | None = None
    subscales: Mapping[str, SubscaleCut] = field(default_factory=dict)

    def band_for(self, total: int | None) -> Band | None:
        if total is None:
            return None
        for b in self.bands:
            if b.min <= total <= b.max:
                return b
        return None


@dataclass(frozen=True, slots=True)
class Subscale:
    id: str
    en: str
    zh: str
    items: tuple[int, ...] = ()
    from_subscales: tuple[str, ...] = ()
    missing: MissingRule = NO_MISSING
    positive_at: int | None = None
    positive_below: int | None = None
    bands: tuple[Band, ...] = ()
    citation: str | None = None


@dataclass(frozen=True, slots=True)
class CriticalItem:
    item: int
    levels: Mapping[Value, Level]  # raw answer -> level; any listed answer fires
    unanswered_level: Level
    en: str
    zh: str
    source: str | None = None

    def level_for(self, raw: Value | None) -> Level | None:
        if raw is None:
            return None
        return self.levels.get(raw)


@dataclass(frozen=True, slots=True)
class ShortForm:
    id: str
    en: str
    zh: str
    item_keys: tuple[str, ...]
    items: tuple[int, ...]  # resolved from keys
    positive_at: int
    variant: str | None = None
    citation: str | None = None


@dataclass(frozen=True, slots=True)
class Licence:
    name: str
    terms: str
    copyright: str
    citation: str
    ship_text: bool
    url: str | None = None
    ship_text_reason: str | None = None
    commercial_use_note: str | None = None


@dataclass(frozen=True, slots=True)
class ReliableChange:
    value: float
    source: str
    sd: float | None = None
    r: float | None = None
    formula: str | None = None
    range_note: str | None = None
    worse: str = "higher"  # direction of deterioration
    kind: str = "reliable_change_index"


@dataclass(frozen=True, eq=False)
class Instrument:
    id: str
    version: str
    name_en: str
    name_zh: str
    short_name: str
    informant: str
    licence: Licence
    time_frame_en: str
    time_frame_zh: str
    items: tuple[Item, ...]
    total_items: tuple[int, ...]
    total_from_subscales: tuple[str, ...]
    missing: MissingRule
    variants: tuple[Variant, ...]
    cutoff_sets: tuple[CutoffSet, ...]
    subscales: tuple[Subscale, ...] = ()
    critical_items: tuple[CriticalItem, ...] = ()
    short_forms: tuple[ShortForm, ...] = ()
    reliable_change: ReliableChange | None = None
    instructions_en: str | None = None
    instructions_zh: str | None = None
    loinc_panel: str | None = None
    loinc_total: str | None = None
    ages_min: int | None = None
    ages_max: int | None = None
    translation: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    path: Path | None = None
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # engine caches (compiled plans); not part of the definition
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __hash__(self) -> int:
        return hash((self.id, self.version))

    @property
    def n_items(self) -> int:
        return len(self.items)

    def item(self, number: int) -> Item:
        return self.items[number - 1]

    def item_by_key(self, key: str) -> Item:
        for it in self.items:
            if it.key == key:
                return it
        raise KeyError(key)

    @property
    def default_variant(self) -> Variant:
        for v in self.variants:
            if v.default:
                return v
        return self.variants[0]

    def variant(self, variant_id: str | None = None) -> Variant:
        if variant_id is None:
            return self.default_variant
        for v in self.variants:
            if v.id == variant_id:
                return v
        raise NotFound(f"{self.id}: no scoring variant {variant_id!r}")

    def has_item_text(self, lang: str) -> bool:
        """Every item has its wording in ``lang`` ("zh" / "en"): the instrument can be shown in it.
        A licensed wording that is not shipped (instruments.md) is missing until a deployment adds it."""
        return all(getattr(it, lang) for it in self.items)

    def cutoff_set(self, cutoff_id: str | None = None, variant_id: str | None = None) -> CutoffSet:
        """The named cut-off set, or the default one for the variant."""
        if cutoff_id is not None:
            for c in self.cutoff_sets:
                if c.id == cutoff_id:
                    return c
            raise NotFound(f"{self.id}: no cut-off set {cutoff_id!r}")
        vid = self.variant(variant_id).id
        cands = [c for c in self.cutoff_sets if c.variant == vid]
        if not cands:
            raise NotFound(f"{self.id}: no cut-off set for variant {vid!r}")
        for c in cands:
            if c.default:
                return c
        return cands[0]

    def subscale(self, subscale_id: str) -> Subscale:
        for s in self.subscales:
            if s.id == subscale_id:
                return s
        raise KeyError(subscale_id)

    def item_range(self, numbers: Iterable[int], variant: Variant) -> tuple[int, int]:
        lo = hi = 0
        for n in numbers:
            rs = self.item(n).response_set
            lo += rs.min_score + variant.item_score_offset
            hi += rs.max_score + variant.item_score_offset
        return lo, hi

    def subscale_range(self, subscale_id: str, variant: Variant | None = None) -> tuple[int, int]:
        variant = variant or self.default_variant
        s = self.subscale(subscale_id)
        if s.from_subscales:
            lo = hi = 0
            for sid in s.from_subscales:
                a, b = self.subscale_range(sid, variant)
                lo, hi = lo + a, hi + b
            return lo, hi
        return self.item_range(s.items, variant)

    def total_range(self, variant_id: str | None = None) -> tuple[int, int]:
        """Smallest and largest possible total under a variant (after the multiplier)."""
        v = self.variant(variant_id)
        if self.total_from_subscales:
            lo = hi = 0
            for sid in self.total_from_subscales:
                a, b = self.subscale_range(sid, v)
                lo, hi = lo + a, hi + b
        else:
            lo, hi = self.item_range(self.total_items, v)
        return lo * v.total_multiplier, hi * v.total_multiplier

    def summary(self) -> dict[str, Any]:
        """Short JSON-able description (``mhp instruments list --json``)."""
        lo, hi = self.total_range()
        return {
            "id": self.id, "version": self.version, "short": self.short_name,
            "en": self.name_en, "zh": self.name_zh, "informant": self.informant,
            "items": self.n_items, "total_range": [lo, hi],
            "variants": [v.id for v in self.variants],
            "cutoff_sets": [c.id for c in self.cutoff_sets],
            "default_cutoff_set": self.cutoff_set().id,
            "bands": [b.id for b in self.cutoff_set().bands],
            "subscales": [s.id for s in self.subscales],
            "short_forms": [s.id for s in self.short_forms],
            "critical_items": [c.item for c in self.critical_items],
            "licence": self.licence.name, "ship_text": self.licence.ship_text,
            "copyright": self.licence.copyright, "citation": self.licence.citation,
            "ages": [self.ages_min, self.ages_max],
        }


# --------------------------------------------------------------------------- loading


def instruments_dir(directory: str | os.PathLike | None = None) -> Path:
    if directory is not None:
        return Path(directory)
    env = os.environ.get(ENV_DIR)
    return Path(env) if env else DEFAULT_DIR


@cache
def _schema_validator() -> jsonschema.protocols.Validator:
    schema_path = DEFAULT_DIR / "schema.json"
    schema = json.loads(schema_path.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def schema() -> dict:
    return _schema_validator().schema


_LOADED: dict[tuple[str, int], Instrument] = {}


def load_file(path: str | os.PathLike) -> Instrument:
    """Load and validate one definition file; raises InstrumentError listing every problem."""
    path = Path(path).resolve()
    try:
        stamp = path.stat().st_mtime_ns
    except OSError as exc:
        raise NotFound(f"instrument file {path} not found") from exc
    key = (str(path), stamp)
    hit = _LOADED.get(key)
    if hit is not None:
        return hit
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InstrumentError(f"{path.name}: not valid TOML: {exc}",
                              [{"path": "", "message": f"not valid TOML: {exc}"}]) from exc
    inst = build(data, path=path)
    _LOADED[key] = inst
    return inst


_BY_ID: dict[tuple[str, str], Instrument] = {}


def load_instrument(instrument_id: str, directory: str | os.PathLike | None = None) -> Instrument:
    """Load ``<directory>/<instrument_id>.toml`` (default directory: see ``instruments_dir``).

    Definitions are read once per process and directory (the answer-save path asks for one on
    every request): an edited definition file is picked up after a restart — or at once through
    ``load_file``, which re-reads a file whose mtime changed."""
    folder = instruments_dir(directory)
    hit = _BY_ID.get((instrument_id, str(folder)))
    if hit is not None:
        return hit
    if not instrument_id or not instrument_id.replace("_", "").isalnum() or not instrument_id.islower():
        raise NotFound(f"no instrument {instrument_id!r}")
    path = folder / f"{instrument_id}.toml"
    if not path.is_file():
        raise NotFound(f"no instrument {instrument_id!r} in {path.parent}")
    inst = load_file(path)
    _BY_ID[(instrument_id, str(folder))] = inst
    return inst


def instrument_files(directory: str | os.PathLike | None = None) -> list[Path]:
    return sorted(instruments_dir(directory).glob("*.toml"))


def load_all(directory: str | os.PathLike | None = None) -> dict[str, Instrument]:
    """Every definition in the directory, by id (raises on the first invalid file)."""
    out: dict[str, Instrument] = {}
    for p in instrument_files(directory):
        inst = load_file(p)
        out[inst.id] = inst
    return out


def build(data: Mapping[str, Any], path: Path | None = None) -> Instrument:
    """Validate a parsed definition (schema + semantic checks) and build the Instrument."""
    where = path.name if path else "<definition>"
    errors = [{"path": "/".join(str(p) for p in e.absolute_path), "message": e.message}
              for e in sorted(_schema_validator().iter_errors(data), key=lambda e: list(map(str, e.absolute_path)))]
    if errors:
        raise InstrumentError(f"{where}: {len(errors)} schema error(s): "
                              + "; ".join(f"{e['path'] or '/'}: {e['message']}" for e in errors[:5]), errors)
    problems: list[str] = []
    try:
        inst = _build(data, path, problems)
    except (KeyError, IndexError, ValueError, TypeError) as exc:  # a broken reference the checks missed
        problems.append(f"cannot build: {type(exc).__name__}: {exc}")
        inst = None
    if inst is not None:
        problems += _semantic_checks(inst)
    if problems:
        raise InstrumentError(f"{where}: " + "; ".join(problems[:5]) + (" …" if len(problems) > 5 else ""),
                              [{"path": "", "message": p} for p in problems])
    assert inst is not None
    return inst


def _band(b: Mapping[str, Any]) -> Band:
    c = b.get("concern")
    return Band(b["id"], int(b["min"]), int(b["max"]), b["en"], b["zh"], Level(c) if c else None)


def _missing(m: Mapping[str, Any] | None) -> MissingRule:
    if not m:
        return NO_MISSING
    return MissingRule(int(m["max_missing"]), m["method"], m.get("rounding", "half_up"), m.get("source"))


def _condition(c: Mapping[str, Any]) -> Condition:
    if "all" in c:
        return Condition("all", children=tuple(_condition(x) for x in c["all"]))
    if "any" in c:
        return Condition("any", children=tuple(_condition(x) for x in c["any"]))
    return Condition("in", item=int(c["item"]), values=tuple(c["in"]))


def _coerce_value(rs: ResponseSet, key: str) -> Value:
    """A critical-item level key (TOML keys are strings) as a raw answer of the response set."""
    if rs.kind == "yes_no":
        return key
    try:
        return int(key)
    except ValueError:
        return key  # reported by the semantic check


def _build(d: Mapping[str, Any], path: Path | None, problems: list[str]) -> Instrument:
    rsets: dict[str, ResponseSet] = {}
    for name, rs in d["response_sets"].items():
        opts = tuple(Option(o["value"], int(o["score"]), o.get("en"), o.get("zh"), o.get("loinc"))
                     for o in rs["options"])
        rsets[name] = ResponseSet(name, rs.get("kind", "choice"), opts)
    items: list[Item] = []
    for it in d["items"]:
        rs = rsets.get(it["response_set"])
        if rs is None:
            problems.append(f"item {it['number']}: unknown response_set {it['response_set']!r}")
            rs = ResponseSet("?", "choice", (Option(0, 0), Option(1, 1)))
        skip = None
        if "skip" in it:
            s = it["skip"]
            skip = Skip(_condition(s["when"]), s.get("value"), s.get("source"))
        items.append(Item(int(it["number"]), it["key"], rs, it.get("en"), it.get("zh"), it.get("loinc"),
                          bool(it.get("scored", True)), bool(it.get("reverse", False)), skip,
                          it.get("unanswered_value"), it.get("note")))
    by_num = {it.number: it for it in items}
    by_key = {it.key: it for it in items}

    variants = tuple(Variant(v["id"], v["en"], v["zh"], bool(v.get("default", False)),
                             int(v.get("item_score_offset", 0)), int(v.get("total_multiplier", 1)),
                             v.get("citation")) for v in d.get("variants", ())) or (STANDARD_VARIANT,)
    default_variant = next((v.id for v in variants if v.default), variants[0].id)

    subscales = tuple(
        Subscale(s["id"], s["en"], s["zh"], tuple(s.get("items", ())), tuple(s.get("from_subscales", ())),
                 _missing(s.get("missing")), s.get("positive_at"), s.get("positive_below"),
                 tuple(_band(b) for b in s.get("bands", ())), s.get("citation"))
        for s in d.get("subscales", ()))

    cutoffs = []
    for c in d["cutoff_sets"]:
        subs = {sid: SubscaleCut(o.get("positive_at"),
                                 tuple(_band(b) for b in o["bands"]) if "bands" in o else None)
                for sid, o in c.get("subscales", {}).items()}
        cutoffs.append(CutoffSet(c["id"], c.get("variant", default_variant), c["citation"], c["population"],
                                 tuple(_band(b) for b in c["bands"]), bool(c.get("default", False)),
                                 c.get("en"), c.get("zh"), subs))

    crits = []
    for c in d.get("critical_items", ()):
        it = by_num.get(int(c["item"]))
        if it is None:
            problems.append(f"critical item {c['item']}: no such item")
            continue
        levels = {_coerce_value(it.response_set, k): Level(v) for k, v in c["levels"].items()}
        crits.append(CriticalItem(it.number, levels, Level(c["unanswered_level"]), c["en"], c["zh"],
                                  c.get("source")))

    shorts = []
    for s in d.get("short_forms", ()):
        nums = []
        for k in s["item_keys"]:
            if k in by_key:
                nums.append(by_key[k].number)
            else:
                problems.append(f"short form {s['id']}: no item with key {k!r}")
        shorts.append(ShortForm(s["id"], s["en"], s["zh"], tuple(s["item_keys"]), tuple(nums),
                                int(s["positive_at"]), s.get("variant"), s.get("citation")))

    total = d.get("total", {})
    scored = tuple(it.number for it in items if it.scored)
    lic = d["licence"]
    rc = d.get("reliable_change")
    return Instrument(
        id=d["id"], version=d["version"], name_en=d["name"]["en"], name_zh=d["name"]["zh"],
        short_name=d["name"]["short"], informant=d.get("informant", "self"),
        licence=Licence(lic["name"], lic["terms"], lic["copyright"], lic["citation"], bool(lic["ship_text"]),
                        lic.get("url"), lic.get("ship_text_reason"), lic.get("commercial_use_note")),
        time_frame_en=d["time_frame"]["en"], time_frame_zh=d["time_frame"]["zh"],
        items=tuple(items),
        total_items=tuple(total.get("items", ())) or (() if total.get("from_subscales") else scored),
        total_from_subscales=tuple(total.get("from_subscales", ())),
        missing=_missing(d["missing"]), variants=variants, cutoff_sets=tuple(cutoffs),
        subscales=subscales, critical_items=tuple(crits), short_forms=tuple(shorts),
        reliable_change=ReliableChange(float(rc["value"]), rc["source"], rc.get("sd"), rc.get("r"),
                                       rc.get("formula"), rc.get("range_note"), rc.get("worse", "higher"),
                                       rc.get("kind", "reliable_change_index")) if rc else None,
        instructions_en=d.get("instructions", {}).get("en"), instructions_zh=d.get("instructions", {}).get("zh"),
        loinc_panel=d.get("loinc", {}).get("panel"), loinc_total=d.get("loinc", {}).get("total"),
        ages_min=d.get("ages", {}).get("min"), ages_max=d.get("ages", {}).get("max"),
        translation={k: dict(v) for k, v in d.get("translation", {}).items()},
        notes=tuple(d.get("notes", ())), path=path, raw=d,
    )


def check_bands(bands: tuple[Band, ...], lo: int, hi: int, what: str) -> list[str]:
    """Bands must be ascending inclusive integer ranges covering [lo, hi] exactly: no gap, no overlap."""
    out: list[str] = []
    if not bands:
        return [f"{what}: no bands"]
    ids = [b.id for b in bands]
    if len(set(ids)) != len(ids):
        out.append(f"{what}: duplicate band ids")
    for b in bands:
        if b.min > b.max:
            out.append(f"{what}: band {b.id} has min {b.min} > max {b.max}")
    if bands[0].min != lo:
        out.append(f"{what}: first band starts at {bands[0].min}, range starts at {lo}")
    if bands[-1].max != hi:
        out.append(f"{what}: last band ends at {bands[-1].max}, range ends at {hi}")
    for a, b in zip(bands, bands[1:], strict=False):
        if b.min <= a.max:
            out.append(f"{what}: bands {a.id} and {b.id} overlap")
        elif b.min > a.max + 1:
            out.append(f"{what}: gap between bands {a.id} and {b.id} ({a.max + 1}–{b.min - 1})")
    return out


def _semantic_checks(inst: Instrument) -> list[str]:
    p: list[str] = []
    if inst.path is not None and inst.path.suffix == ".toml" and inst.path.stem != inst.id:
        p.append(f"id {inst.id!r} does not match file name {inst.path.name!r}")
    nums = [it.number for it in inst.items]
    if nums != list(range(1, len(nums) + 1)):
        p.append(f"items must be numbered 1..{len(nums)} in order, got {nums}")
    keys = [it.key for it in inst.items]
    if len(set(keys)) != len(keys):
        p.append("item keys must be unique")
    by_num = {it.number: it for it in inst.items}

    for rs in {it.response_set.name: it.response_set for it in inst.items}.values():
        vals = [o.value for o in rs.options]
        if len(set(vals)) != len(vals):
            p.append(f"response set {rs.name}: duplicate option values")
        if rs.kind == "yes_no":
            if any(v not in YES_NO_VALUES for v in vals):
                p.append(f"response set {rs.name}: yes_no values must be among {YES_NO_VALUES}")
        elif any(not isinstance(v, int) for v in vals):
            p.append(f"response set {rs.name}: choice values must be integers")

    def valid_value(it: Item, v: Any) -> bool:
        return v is not None and it.response_set.option(v) is not None

    for it in inst.items:
        if it.skip is not None:
            for n in it.skip.when.items():
                if n not in by_num:
                    p.append(f"item {it.number}: skip condition refers to unknown item {n}")
                elif n >= it.number:
                    p.append(f"item {it.number}: skip condition must refer to an earlier item, not {n}")
            if it.skip.value is not None and not valid_value(it, it.skip.value):
                p.append(f"item {it.number}: skip value {it.skip.value!r} is not an option")
            _check_condition_values(it.skip.when, by_num, p, f"item {it.number} skip")
        if it.unanswered_value is not None and not valid_value(it, it.unanswered_value):
            p.append(f"item {it.number}: unanswered_value {it.unanswered_value!r} is not an option")
        if inst.licence.ship_text is False:
            if it.en or it.zh or any(o.en or o.zh for o in it.options):
                p.append(f"item {it.number}: licence.ship_text is false but the item carries text")
        elif not it.en:
            p.append(f"item {it.number}: no English text (licence.ship_text is true)")

    for n in inst.total_items:
        if n not in by_num:
            p.append(f"total: unknown item {n}")
        elif not by_num[n].scored:
            p.append(f"total: item {n} is not scored")

    def check_missing(m: MissingRule, n_items: int, what: str) -> None:
        if m.method == "none" and m.max_missing != 0:
            p.append(f"{what}: method 'none' needs max_missing = 0")
        if n_items and m.max_missing >= n_items:
            p.append(f"{what}: max_missing {m.max_missing} leaves no answered item")

    check_missing(inst.missing, len(inst.total_items), "missing")

    vids = [v.id for v in inst.variants]
    if len(set(vids)) != len(vids):
        p.append("variant ids must be unique")
    if sum(v.default for v in inst.variants) > 1:
        p.append("at most one default variant")

    sub_ids: list[str] = []
    for s in inst.subscales:
        if bool(s.items) == bool(s.from_subscales):
            p.append(f"subscale {s.id}: give exactly one of items / from_subscales")
        for n in s.items:
            if n not in by_num:
                p.append(f"subscale {s.id}: unknown item {n}")
            elif not by_num[n].scored:
                p.append(f"subscale {s.id}: item {n} is not scored")
        for sid in s.from_subscales:
            if sid not in sub_ids:
                p.append(f"subscale {s.id}: from_subscales {sid!r} must be an earlier subscale")
        check_missing(s.missing, len(s.items), f"subscale {s.id}")
        if s.positive_at is not None and s.positive_below is not None:
            p.append(f"subscale {s.id}: give at most one of positive_at / positive_below")
        sub_ids.append(s.id)
        if s.bands and not p:
            lo, hi = inst.subscale_range(s.id)
            p += check_bands(s.bands, lo, hi, f"subscale {s.id}")
    if len(set(sub_ids)) != len(sub_ids):
        p.append("subscale ids must be unique")
    for sid in inst.total_from_subscales:
        if sid not in sub_ids:
            p.append(f"total: unknown subscale {sid!r}")

    cids = [c.id for c in inst.cutoff_sets]
    if len(set(cids)) != len(cids):
        p.append("cut-off set ids must be unique")
    if sum(c.default for c in inst.cutoff_sets) > 1:
        p.append("at most one default cut-off set")
    if p:
        return p  # ranges need a sound structure
    for c in inst.cutoff_sets:
        if c.variant not in vids:
            p.append(f"cut-off set {c.id}: unknown variant {c.variant!r}")
            continue
        lo, hi = inst.total_range(c.variant)
        p += check_bands(c.bands, lo, hi, f"cut-off set {c.id}")
        for sid, cut in c.subscales.items():
            if sid not in sub_ids:
                p.append(f"cut-off set {c.id}: unknown subscale {sid!r}")
            elif cut.bands:
                slo, shi = inst.subscale_range(sid, inst.variant(c.variant))
                p += check_bands(cut.bands, slo, shi, f"cut-off set {c.id} subscale {sid}")
    if not any(c.variant == inst.default_variant.id for c in inst.cutoff_sets):
        p.append("no cut-off set for the default variant")

    for ci in inst.critical_items:
        it = by_num[ci.item]
        for v in ci.levels:
            if not valid_value(it, v):
                p.append(f"critical item {ci.item}: {v!r} is not an option of the item")
    if len({c.item for c in inst.critical_items}) != len(inst.critical_items):
        p.append("an item may be listed once in critical_items")

    sf_ids = [s.id for s in inst.short_forms]
    if len(set(sf_ids)) != len(sf_ids):
        p.append("short form ids must be unique")
    for sf in inst.short_forms:
        if sf.variant is not None and sf.variant not in vids:
            p.append(f"short form {sf.id}: unknown variant {sf.variant!r}")
        for n in sf.items:
            if not by_num[n].scored:
                p.append(f"short form {sf.id}: item {n} is not scored")
    return p


def _check_condition_values(c: Condition, by_num: Mapping[int, Item], p: list[str], what: str) -> None:
    if c.op == "in":
        it = by_num.get(c.item)
        if it is not None:
            for v in c.values:
                if it.response_set.option(v) is None:
                    p.append(f"{what}: {v!r} is not an option of item {c.item}")
        return
    for ch in c.children:
        _check_condition_values(ch, by_num, p, what)


def max_concern(levels: Iterable[Level | None]) -> Level | None:
    best: Level | None = None
    for lv in levels:
        if lv is not None and (best is None or LEVEL_RANK[lv] > LEVEL_RANK[best]):
            best = lv
    return best
