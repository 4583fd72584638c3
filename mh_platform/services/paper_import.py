"""Paper results: a CSV/XLSX of item answers (one row per student and instrument), scored by the
vectorised engine (``core.scoring.score_many``), through the same quality checks and flag path as
online answers, written in ONE transaction — or nothing at all when any row has an error.

File: columns ``学籍号`` (student number), ``量表`` (instrument id, e.g. ``phq9``) and one column per
item named by its number (``1``, ``2``, … or ``q1``/``第1题``). Choice items take the printed option
value; yes/no items ``是``/``否``/``拒绝回答`` (or yes/no/refused). A blank cell is an unanswered item.
Each student must be eligible for the campaign, in the importer's scope (and in the class, if one
is given), have consent, have the instrument in their battery and no response to it yet.

Analysis (``_analyse``, the same for ``preview`` and ``commit``): blind indexes of the distinct
student numbers in one batch, set-based look-ups (``db.bulk.in_chunks``: ``= ANY(array)`` on
PostgreSQL, IN lists on SQLite) for students, enrolments, consents and existing responses, item
cells validated column by column into a float matrix per instrument, scored at once, with the
quality check (longstring) and the "can this row raise a flag" test (a band the flag policy flags, a
critical item fired or unanswered, or a previous screening to compare with) vectorised.

Writing (``commit`` only): per-student data keys unwrapped in one batch (``KeyService.student_keys``);
answers JSON built from per-item fragments (the text ``json.dumps(answers, separators=(",", ":"))``
gives) and sealed in one batch (``KeyService.seal_many_with``: the same envelope and AAD as ``seal``);
every response — flag-raising ones included — written in one set-based insert through the session's
DBAPI connection (``db.bulk.BulkInsert``: ``executemany`` on SQLite, ``COPY`` on PostgreSQL), in
student order with sorted fresh time-ordered (UUIDv7) ids, each column in the form SQLAlchemy
itself would bind. The flag path (``responses.flag_path``, as one ``flags.FlagBatch``) then runs on the
stored flag-raising responses only (its notices go to the outbox in the same transaction and are
delivered by the outbox job, not inline); completion codes are updated (or markers inserted) set-based; one
audit event; one commit. The cyclic garbage collector is paused for the duration (see
``_cyclic_gc_paused``).
"""

from __future__ import annotations

import gc
import json
import os
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from typing import Any, cast

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core import scoring
from mh_platform.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from mh_platform.core.flag_rules import band_level
from mh_platform.core.i18n import N_
from mh_platform.core.instruments import Instrument, load_instrument
from mh_platform.core.types import Role, UnitKind
from mh_platform.db.base import time_ordered_ids
from mh_platform.db.bulk import BulkInsert, IdReader, in_, in_chunks, uuid_hex
from mh_platform.db.models import AccessCode, Consent, Enrolment, OrgUnit, Response, Student
from mh_platform.services import audit
from mh_platform.services.access import in_scope
from mh_platform.services.campaigns import get_campaign, student_battery
from mh_platform.services.context import Actor, ServiceContext
from mh_platform.services.flags import FlagBatch
from mh_platform.services.keys import KeyService
from mh_platform.services.responses import LONGSTRING_MIN, flag_path
from mh_platform.services.roster import ImportRefused, RowError, formula_like, map_header, read_table

IMPORTERS = {Role.COUNSELLOR}
YES_NO = {"是": "yes", "否": "no", "拒绝回答": "refused", "拒答": "refused", "yes": "yes", "no": "no",
          "refused": "refused", "y": "yes", "n": "no"}
_NAN = float("nan")  # an unanswered cell (one object: compared by identity)
COLUMNS = {"student_number": ("学籍号", "全国学籍号", "学号", "student_number"), "instrument": ("量表", "instrument")}


@dataclass
class PaperPreview:
    rows: int = 0
    responses: int = 0
    answers: int = 0
    students: int = 0
    by_instrument: dict[str, int] = field(default_factory=dict)
    errors: list[RowError] = field(default_factory=list)
    flagged: int = 0
    critical_lines: list[int] = field(default_factory=list)  # a file with errors: rows with a positive critical answer

    @property
    def ok(self) -> bool:
        return not self.errors and self.rows > 0

    def summary(self) -> dict[str, Any]:
        return {"rows": self.rows, "responses": self.responses, "answers": self.answers, "students": self.students,
                "by_instrument": dict(self.by_instrument), "errors": len(self.errors), "flag_checks": self.flagged,
                "critical_lines": list(self.critical_lines)}


CRITICAL_NOTE = ("含关键条目阳性作答（如 PHQ-9 第9题、ASQ）：文件有错误，未导入，因此尚未产生预警——请立即联系该学生，"
                 "并尽快修正文件后重新导入 / a positive critical answer: the file was not imported, so no flag "
                 "was raised yet — reach this student now, then fix and import the file")


def _critical_lines(parsed: _Parsed) -> list[int]:
    """The rows of a refused file that answer a critical item positively (PHQ-9 item 9, ASQ …), read
    cell by cell whatever else is wrong in the row (even an unknown student number: it names a
    child). All-or-nothing means none of them raised a flag: the importer is told which rows to act
    on now, rather than only "fix the file"."""
    names = {v: k for k, v in scoring.YES_NO_CODES.items()}
    positive: dict[str, list[tuple[int, frozenset[str]]]] = {}
    out: list[int] = []
    for line, _num, iid, cells in parsed.rows:
        if iid not in positive:
            positive[iid] = []
            try:
                inst = load_instrument(iid)
            except Exception:  # noqa: BLE001, S112 - an unknown instrument id is one of the file's errors
                continue
            maps = _value_maps(inst)
            for c in inst.critical_items:
                col = parsed.item_cols.get(c.item)
                if col is None:
                    continue
                yes_no = inst.items[c.item - 1].kind == "yes_no"
                texts = frozenset(t for t, code in maps[c.item - 1].items()
                                  if code == code and c.level_for(names[int(code)] if yes_no else int(code)) is not None)
                positive[iid].append((col, texts))
        if any(col < len(cells) and cells[col].strip() in texts for col, texts in positive[iid]):
            out.append(line)
    return out


def _item_col(h: str) -> int | None:
    t = h.strip().lower().removeprefix("q").removeprefix("item").removeprefix("第").removesuffix("题").strip()
    return int(t) if t.isdigit() and 0 < int(t) <= 200 else None


@dataclass
class _Parsed:
    rows: list[tuple[int, str, str, list[str]]]  # (line, number, instrument, cells as read)
    item_cols: dict[int, int]


def _parse(table: list[list[str]]) -> _Parsed:
    start = 0
    while start < len(table) and not any(c.strip() for c in table[start]):
        start += 1
    if start >= len(table):
        raise ImportRefused(N_("the file has no header row"))
    header = table[start]
    cols = map_header(header, COLUMNS, ("student_number", "instrument"))
    items = {n: i for i, h in enumerate(header) if (n := _item_col(h)) is not None}
    if not items:
        raise ImportRefused(N_("no item columns (1, 2, 3 … or q1, q2 …)"))
    rows = []
    sn, ins = cols["student_number"], cols["instrument"]
    width = len(header)
    pad = [""] * width
    for line, r in enumerate(table[start + 1:], start=start + 2):
        if len(r) < width:
            r = r + pad[len(r):]
        num = r[sn].strip()
        if not num and not "".join(r).strip():
            continue
        # item cells stay as read: _value_matrix strips the few that are not an exact option text
        rows.append((line, num, r[ins].strip().lower(), r))
    if not rows:
        raise ImportRefused(N_("the file has no data rows"))
    return _Parsed(rows, items)


def _value_maps(inst: Instrument) -> list[dict[str, float]]:
    """Per item: cell text → batch-matrix code (printed value, or YES_NO_CODES)."""
    maps = []
    for it in inst.items:
        m: dict[str, float] = {"": _NAN}
        for o in it.options:
            if it.kind == "yes_no":
                for k, v in YES_NO.items():
                    if v == o.value:
                        m[k] = float(scoring.YES_NO_CODES[v])
                        m[k.upper()] = m[k]
            else:
                m[str(o.value)] = float(o.value)
                m[f"{o.value}.0"] = float(o.value)
        maps.append(m)
    return maps


@dataclass
class _Group:
    """The valid rows of one instrument, scored as one matrix."""

    inst: Instrument
    rows: list[tuple[int, tuple]]  # (line, student tuple)
    X: np.ndarray  # raw answers, NaN = unanswered (yes/no as YES_NO_CODES)
    bs: scoring.BatchScores
    answered: np.ndarray  # answers per row
    longstring: np.ndarray  # the quality flag of responses.quality_checks
    flag: np.ndarray  # rows that can raise a flag: they also go through the flag path


@dataclass
class _Plan:
    preview: PaperPreview
    groups: list[_Group]
    completed: list[tuple[uuid.UUID, uuid.UUID]]  # (student, class) whose battery is now complete
    with_previous: set[tuple[uuid.UUID, str]]  # (student, instrument) with a scored screening elsewhere


def _value_matrix(inst: Instrument, parsed: _Parsed, rows: list[tuple[int, tuple, list[str]]],
                  err: Any) -> np.ndarray | None:
    """The (rows, items) matrix of cell values, column by column; None after a row error."""
    maps = _value_maps(inst)
    k = inst.n_items
    X = np.full((len(rows), k), np.nan)
    errors: list[tuple[int, int, RowError]] = []  # (row, column) order, as the rows were read
    cell_rows = [cells for _l, _s, cells in rows]
    for n in (n for n in parsed.item_cols if n > k):  # columns of items this instrument does not have
        c = parsed.item_cols[n]
        col = list(map(itemgetter(c), cell_rows))
        if any(col):
            errors += [(r, c, RowError(rows[r][0], str(n), f"{inst.id} 没有第{n}题 / {inst.id} has no item {n}"))
                       for r, v in enumerate(col) if v.strip()]
    for j in range(k):
        ci = parsed.item_cols.get(j + 1)
        if ci is None:
            continue
        m = maps[j]
        col = list(map(itemgetter(ci), cell_rows))
        vals = list(map(m.get, col))  # exact option texts (and "" → NaN); anything else → None
        if None in vals:
            for r in [r for r, x in enumerate(vals) if x is None]:  # spaces around, or not an option
                cell = col[r].strip()
                v = m.get(cell)
                if v is not None:
                    vals[r] = v
                    continue
                why = "以 = + - @ 开头的内容不允许（公式） / formula-like text refused" if formula_like(cell) else \
                    "不是该题的选项 / not an option of this item"
                errors.append((r, ci, RowError(rows[r][0], str(j + 1), why)))
                vals[r] = _NAN
        X[:, j] = vals
    for _r, _c, e in sorted(errors, key=lambda t: (t[0], t[1])):
        err(e)
    return None if errors else X


def _longstring(inst: Instrument, X: np.ndarray) -> np.ndarray:
    """``responses.quality_checks``' longstring for every row: all items of a page of at least
    LONGSTRING_MIN choice items answered, all with the same answer, and not the lowest option."""
    n = X.shape[0]
    if inst.n_items < LONGSTRING_MIN or any(it.kind != "choice" for it in inst.items):
        return np.zeros(n, dtype=bool)
    lo = min(o.value for o in inst.items[0].options if isinstance(o.value, int))
    first = X[:, :1]
    with np.errstate(invalid="ignore"):
        return ~np.isnan(X).any(axis=1) & (first == X).all(axis=1) & (X[:, 0] != lo)


def _analyse(ctx: ServiceContext, s: Session, actor: Actor, table: list[list[str]], campaign_id: uuid.UUID,
             class_unit_id: uuid.UUID | None) -> _Plan:
    if actor.role not in IMPORTERS or not actor.unit_path:
        raise Forbidden(N_("paper results are imported by the school counsellor"))
    pv = PaperPreview()
    err = pv.errors.append
    camp, units = get_campaign(s, actor, campaign_id)
    if camp.status not in ("open", "closed"):
        raise InvalidTransition(N_("paper results are accepted once the campaign has opened"))
    scope_path = actor.unit_path
    if class_unit_id is not None:
        cls = s.get(OrgUnit, class_unit_id)
        if cls is None or cls.kind != UnitKind.CLASS.value or not in_scope(actor, cls.path):
            raise NotFound("class not found")
        scope_path = cls.path
    parsed = _parse(table)
    pv.rows = len(parsed.rows)
    # students: one blind index per distinct number, then set-based look-ups (db.bulk.in_chunks)
    distinct = list({num: None for _line, num, _i, _c in parsed.rows if num})
    numbers = dict(zip(distinct, ctx.keyring.blind_indexes(s, "student_number", distinct), strict=True))
    by_bidx: dict[bytes, tuple] = {}
    bidxs = [b for b in numbers.values() if b is not None]

    # one index-driven look-up per chunk: the student by blind index, joined to the year's enrolment
    # and (an EXISTS) its granted consent — one row per student (both unique per student and year);
    # eligibility and scope are then checked in Python on the few columns fetched
    conn = s.connection()  # column look-ups: Core execution, no ORM loading layer per row
    uid = IdReader()  # ids read raw and turned into UUIDs once per distinct value
    grades = {int(g) for g in camp.grades}
    unit_paths = tuple(u.path for u in units)
    consented = sa.exists().where(Consent.student_id == Student.id, Consent.academic_year_id == camp.academic_year_id,
                                  Consent.status == "granted", Consent.withdrawn_at.is_(None))
    for cond in in_chunks(s, Student.student_number_bidx, bidxs):
        for b, raw, by, grade, cls_id, school_id, path, ok in conn.execute(
                sa.select(Student.student_number_bidx, uid.col(Student.id), Student.birth_year, Enrolment.grade_level,
                          uid.col(Enrolment.class_unit_id), uid.col(Enrolment.school_unit_id), Enrolment.unit_path,
                          consented)
                .join(Enrolment, Enrolment.student_id == Student.id)
                .where(cond, Student.erased_at.is_(None), Enrolment.academic_year_id == camp.academic_year_id,
                       Enrolment.active.is_(True))).all():
            if grade not in grades or not path.startswith(unit_paths) or not path.startswith(scope_path):
                continue
            # the student tuple; its last field, a small int, keys the per-row sets (cheaper than UUIDs)
            by_bidx[b] = (uid.to_uuid(raw), by, grade, uid.to_uuid(cls_id), uid.to_uuid(school_id), path, bool(ok),
                          len(by_bidx))
    index = {v[0]: v[7] for v in by_bidx.values()}
    sids = list(index)
    existing: set[tuple[int, str]] = set()
    done_before: dict[int, set[str]] = defaultdict(set)
    for cond in in_chunks(s, Response.student_id, sids):
        for raw, iid, st in conn.execute(sa.select(uid.col(Response.student_id), Response.instrument_id,
                                                   Response.status).where(Response.campaign_id == camp.id, cond)).all():
            k = index[uid.to_uuid(raw)]
            existing.add((k, iid))
            if st == "submitted":
                done_before[k].add(iid)
    insts: dict[str, Instrument] = {}
    groups: dict[str, list[tuple[int, tuple, list[str]]]] = defaultdict(list)
    seen: dict[tuple[int, str], int] = {}
    stored_lines: set[int] = set()  # lines whose response is already stored
    battery_cache: dict[tuple[int, int | None], tuple[str, ...]] = {}
    for line, num, iid, cells in parsed.rows:
        b = numbers.get(num)
        if not num or b is None:
            err(RowError(line, "学籍号", "学籍号缺失或格式不正确 / student number missing or not valid"))
            continue
        st = by_bidx.get(b)
        if st is None:
            err(RowError(line, "学籍号", "学生不在本次测评或您的范围内 / student not in this campaign or your units"))
            continue
        _sid, birth_year, grade, _cls, _sch, _path, ok, k = st
        if not ok:
            err(RowError(line, "学籍号", "该学生没有有效的监护人知情同意 / no guardian consent"))
            continue
        key = (grade, birth_year)
        if key not in battery_cache:
            battery_cache[key] = student_battery(camp, grade, birth_year)
        if iid not in battery_cache[key]:
            err(RowError(line, "量表", "该量表不在此学生的测评组合中 / instrument not in the student's battery"))
            continue
        if (k, iid) in existing:
            err(RowError(line, "量表", "该学生已有此量表的作答 / the student already has a response to it"))
            stored_lines.add(line)  # stored before (and flagged then, if it had to be)
            continue
        first = seen.setdefault((k, iid), line)
        if first != line:
            err(RowError(line, "学籍号", f"与第{first}行重复 / same student and instrument as row {first}"))
            continue
        if iid not in insts:
            insts[iid] = load_instrument(iid)
        groups[iid].append((line, st, cells))
    all_sids = list({st[0]: None for g in groups.values() for _l, st, _c in g})
    prev: set[tuple[int, str]] = set()  # a previous screening to compare with (deterioration)
    for cond in in_chunks(s, Response.student_id, all_sids):
        prev.update((index[uid.to_uuid(raw)], iid) for raw, iid in conn.execute(
            sa.select(uid.col(Response.student_id), Response.instrument_id).where(
                cond, Response.campaign_id != camp.id,
                Response.status == "submitted", Response.total.is_not(None))).all())
    out: list[_Group] = []
    new_done: dict[int, set[str]] = defaultdict(set)
    for iid, rows in groups.items():
        inst = insts[iid]
        X = _value_matrix(inst, parsed, rows, err)
        if X is None:
            continue
        bs = scoring.score_many(inst, X)
        n = len(rows)
        # bands that raise a flag under the flag policy (as the flag path decides: flag_rules.band_level)
        flag_band = np.array([band_level(inst.id, b.id, b.concern) is not None for b in bs.cutoff.bands] + [False],
                             dtype=bool)
        flag = flag_band[bs.band]  # band -1 (none) → the trailing False
        if bs.critical.size:
            flag |= bs.critical.any(axis=1) | bs.critical_unanswered.any(axis=1)
        if prev:
            flag |= np.fromiter(((st[7], iid) in prev for _l, st, _c in rows), dtype=bool, count=n)
        answered = (~np.isnan(X)).sum(axis=1)
        out.append(_Group(inst, [(line, st) for line, st, _c in rows], X, bs, answered, _longstring(inst, X), flag))
        pv.by_instrument[iid] = n
        pv.responses += n
        pv.answers += int(answered.sum())
        pv.flagged += int(flag.sum())
        for _l, st, _c in rows:
            new_done[st[7]].add(iid)
    pv.students = len(new_done)
    completed = []
    for st in by_bidx.values():
        k = st[7]
        if k in new_done:
            battery = battery_cache[(st[2], st[1])]
            if set(battery) <= (new_done[k] | done_before[k]):
                completed.append((st[0], st[3]))
    sid_of = {st[7]: st[0] for st in by_bidx.values()}
    if pv.errors:
        pv.critical_lines = [line for line in _critical_lines(parsed) if line not in stored_lines]
    return _Plan(pv, out, completed, {(sid_of[k], iid) for k, iid in prev})


# --------------------------------------------------------------------------- writing


_COLUMNS = ("id", "student_id", "school_unit_id", "instrument_id", "instrument_version", "answers_enc",
            "n_answered", "total", "score_status", "band_id", "concern_level", "subscales", "critical_fired",
            "critical_unanswered", "quality", "quality_suggestion")
"""The response columns an import gives row by row; the rest are the same on every row (``_write``)."""


def _answer_texts(inst: Instrument, X: np.ndarray) -> list[str]:
    """Each row's answers as given, as ``json.dumps({item: value}, separators=(",", ":"))``: the
    printed option value, or ``"yes"``/``"no"``/``"refused"``; unanswered items left out."""
    names = {v: k for k, v in scoring.YES_NO_CODES.items()}
    frags: list[dict[int, str]] = []
    for j, it in enumerate(inst.items):
        key = json.dumps(str(j + 1))
        if it.kind == "yes_no":
            frags.append({code: f"{key}:{json.dumps(name)}" for code, name in names.items()})
        else:
            frags.append({int(o.value): f"{key}:{int(o.value)}" for o in it.options})
    missing = -(2 ** 31)  # no option has this value
    codes = np.where(np.isnan(X), missing, X).astype(np.int64).tolist()
    return ["{" + ",".join([frags[j][v] for j, v in enumerate(row) if v != missing]) + "}"
            if missing in row else "{" + ",".join([f[v] for f, v in zip(frags, row, strict=True)]) + "}"
            for row in codes]


def _answers_of(inst: Instrument, x: np.ndarray) -> dict[str, Any]:
    names = {v: k for k, v in scoring.YES_NO_CODES.items()}
    return {str(j + 1): (names[int(v)] if inst.items[j].kind == "yes_no" else int(v))
            for j, v in enumerate(x) if v == v}


def _write(ctx: ServiceContext, s: Session, plan: _Plan, campaign_id: uuid.UUID, now: datetime
           ) -> list[tuple[uuid.UUID, scoring.ScoreResult]]:
    """Insert every response of the plan in one set-based write; returns the (id, full result) of
    the responses that go through the flag path.

    Built column by column: each instrument group gives its values as lists, the lists are joined
    over the groups, and the write order (below) picks from each joined list at C speed
    (``operator.itemgetter``); ``zip`` makes the rows. Columns that are the same on every row
    (campaign, source, status, times) go to ``BulkInsert`` as constants."""
    w = BulkInsert(s, cast(sa.Table, Response.__table__), _COLUMNS,
                   constants={"campaign_id": campaign_id, "source": "paper", "status": "submitted", "item_ms": None,
                              "started_at": now, "updated_at": now, "submitted_at": now, "scored_at": now})
    b = w.bind
    students = list({st[7]: st for g in plan.groups for _l, st in g.rows}.values())
    by_id = ctx.keyring.student_keys(s, [st[0] for st in students], now)
    keys = {st[7]: by_id[st[0]] for st in students}  # by the student's int index
    # a UUID column's bound value is its 32 hex digits on both databases (``db.bulk.uuid_hex``)
    stored_sid = {st[7]: st[0].hex for st in students}
    schools = {st[4]: st[4].hex for st in students}
    stored_school = {st[7]: schools[st[4]] for st in students}
    no_subscales, true, false = b("subscales", None), b("critical_fired", True), b("critical_fired", False)
    quality = {False: b("quality", {"longstring": False}), True: b("quality", {"longstring": True})}
    suggestion = {False: None, True: "readminister"}
    # per column, the values of every group one after another (flat index = group offset + row)
    col: dict[str, list] = defaultdict(list)
    full: list[scoring.ScoreResult | None] = []
    for g in plan.groups:
        inst, bs, n = g.inst, g.bs, len(g.rows)
        ks = [st[7] for _l, st in g.rows]
        band_ids = [bd.id for bd in bs.cutoff.bands] + [None]  # band -1 → None
        crit = cast(list[bool], bs.critical.any(axis=1).tolist()) if bs.critical.size else [False] * n
        unans = (cast(list[bool], bs.critical_unanswered.any(axis=1).tolist()) if bs.critical_unanswered.size
                 else [False] * n)
        if bs.subscales:
            subs = [b("subscales", {k: {"score": None if v[r] != v[r] else int(v[r]),
                                        "positive": None if v[r] != v[r] else bool(bs.subscale_positive[k][r])}
                                    for k, v in bs.subscales.items()}) for r in range(n)]
        else:
            subs = [no_subscales] * n
        concern = bs.concern_levels()  # every row's, as the online submit stores it (not only flagged rows')
        g_full: list[scoring.ScoreResult | None] = [None] * n
        for r in np.flatnonzero(g.flag).tolist():
            # the few rows that can raise a flag get the full one-at-a-time result (critical levels
            # included: BatchScores.result leaves the fired items' levels out)
            res = g_full[r] = scoring.score(inst, _answers_of(inst, g.X[r]))
            lv = res.concern
            concern[r] = lv.value if lv else None
        long_ = g.longstring.tolist()
        col["k"] += ks
        col["student_id"] += [stored_sid[k] for k in ks]
        col["school_unit_id"] += [stored_school[k] for k in ks]
        col["instrument_id"] += [inst.id] * n
        col["instrument_version"] += [inst.version] * n
        col["text"] += _answer_texts(inst, g.X)
        col["n_answered"] += g.answered.tolist()
        col["total"] += [None if t != t else t for t in bs.total.tolist()]
        col["score_status"] += [scoring.STATUS_CODES[c] for c in bs.status.tolist()]
        col["band_id"] += [band_ids[c] for c in bs.band.tolist()]
        col["concern_level"] += concern
        col["subscales"] += subs
        col["critical_fired"] += [true if c else false for c in crit]
        col["critical_unanswered"] += [true if c else false for c in unans]
        col["quality"] += [quality[x] for x in long_]
        col["quality_suggestion"] += [suggestion[x] for x in long_]
        full += g_full
    n = len(full)
    if n == 0:
        return []
    # Written in student order with fresh time-ordered ids sorted the same way: the b-trees of the
    # id and (student, campaign, instrument) indexes are then filled in key order, page after page,
    # instead of at random places (a third less write time on SQLite); the ids, newer than any
    # before them, also extend the primary key at its right edge in a non-empty table. The sort is
    # stable: a student's rows keep the groups' order (the file's instrument order).
    sid_col = col["student_id"]
    order = sorted(range(n), key=sid_col.__getitem__)
    pick = itemgetter(*order) if n > 1 else (lambda seq: (seq[0],))
    ids = time_ordered_ids(n)
    flagged = [(uuid.UUID(bytes=ids[i]), fr) for i, f in enumerate(order) if (fr := full[f]) is not None]
    texts, row_keys = pick(col["text"]), pick([keys[k] for k in col["k"]])

    def sealed() -> Iterator[bytes]:  # sealed a slice at a time while the database takes the rows
        for i in range(0, n, _SEAL_SLICE):
            j = i + _SEAL_SLICE
            yield from KeyService.seal_many_with(list(zip(row_keys[i:j], ids[i:j], texts[i:j], strict=True)),
                                                 table="response", column="answers_enc")

    columns = {"id": [uuid_hex(rid) for rid in ids], "answers_enc": sealed()}
    w.write(zip(*[columns[c] if c in columns else pick(col[c]) for c in _COLUMNS], strict=True), count=n)
    return flagged


_SEAL_SLICE = 8192


def _flag_paths(ctx: ServiceContext, s: Session, flagged: list[tuple[uuid.UUID, scoring.ScoreResult]],
                now: datetime, with_previous: set[tuple[uuid.UUID, str]]) -> None:
    """The flag path on the stored flag-raising responses, as for an online submission, as one
    ``flags.FlagBatch`` (same outcome, less work per flag): units and recipients looked up once, the
    notices written together and delivered by the outbox job (``notify_send_pending``, every 20 s)
    rather than one by one at commit — hundreds of inline deliveries (SMTP included) would hold the
    importer's request for minutes — and cluster alerts checked once per class and once per school
    after the last flag is in, carrying the final count."""
    batch = FlagBatch()
    for i in range(0, len(flagged), 900):
        chunk = flagged[i:i + 900]
        stored = {r.id: r for r in s.scalars(sa.select(Response).where(in_(s, Response.id, [c[0] for c in chunk])))}
        batch.prefetch(s, [r.student_id for r in stored.values()])
        # the analysis looked for earlier screenings of every student: no look-up per response where
        # it found none (deterioration needs one)
        batch.without_previous.update((r.student_id, r.instrument_id) for r in stored.values()
                                      if (r.student_id, r.instrument_id) not in with_previous)
        for rid, res in chunk:
            flag_path(ctx, s, stored[rid], res, now, trigger="submitted", batch=batch)
        batch.flush(s)
    batch.finish(ctx, s, now)


def _mark_completed(s: Session, completed: list[tuple[uuid.UUID, uuid.UUID]], campaign_id: uuid.UUID,
                    now: datetime) -> None:
    """The whole battery on paper (or partly online before) counts as completed: the student's code
    is marked completed, or, when none was ever issued, a completion marker no typed code can match."""
    if not completed:
        return
    have: dict[uuid.UUID, uuid.UUID] = {}
    sids = [c[0] for c in completed]
    for cond in in_chunks(s, AccessCode.student_id, sids):
        have.update(s.execute(sa.select(AccessCode.student_id, AccessCode.id).where(
            AccessCode.campaign_id == campaign_id, cond)).tuples().all())
    for cond in in_chunks(s, AccessCode.id, list(have.values())):
        s.execute(sa.update(AccessCode).where(cond, AccessCode.completed_at.is_(None))
                  .values(completed_at=now, sitting_hash=None))  # answered on paper: any online sitting ends
    new = [(sid, cls_id) for sid, cls_id in completed if sid not in have]
    if new:
        w = BulkInsert(s, cast(sa.Table, AccessCode.__table__), ("id", "student_id", "code_hash", "class_unit_id"),
                       constants={"campaign_id": campaign_id, "created_at": now, "first_used_at": now,
                                  "completed_at": now, "revoked_at": now})
        new.sort(key=lambda c: c[0].bytes)  # in student order, with sorted fresh ids (see _write)
        ids = time_ordered_ids(len(new))
        pool = os.urandom(32 * len(new))  # random "hashes" no typed code can match, sorted like the ids
        hashes = sorted([pool[i:i + 32] for i in range(0, len(pool), 32)])
        classes = {cls_id: w.bind("class_unit_id", cls_id) for _sid, cls_id in new}
        w.write(zip([uuid_hex(rid) for rid in ids], [sid.hex for sid, _c in new], hashes,
                    [classes[cls_id] for _sid, cls_id in new], strict=True), count=len(new))


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """An import allocates millions of small objects that hold no reference cycles (cells, rows,
    tuples, envelopes); with the cyclic collector on, every full collection walks all of them
    again — a third of the import time at 1M answers. Reference counting frees them just the same;
    the collector is back on (if it was) when the import returns or fails."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def preview(ctx: ServiceContext, actor: Actor, file_bytes: bytes, filename: str, campaign_id: uuid.UUID,
            class_unit_id: uuid.UUID | None = None) -> PaperPreview:
    with _cyclic_gc_paused():
        table = read_table(ctx, file_bytes, filename)
        with ctx.uow() as uow:
            return _analyse(ctx, uow.session, actor, table, campaign_id, class_unit_id).preview


def commit(ctx: ServiceContext, actor: Actor, file_bytes: bytes, filename: str, campaign_id: uuid.UUID,
           class_unit_id: uuid.UUID | None = None, *, table: list[list[str]] | None = None) -> PaperPreview:
    """Import in one transaction (answers, scores, flags); any row error → ValidationFailed, nothing written."""
    with _cyclic_gc_paused():
        return _commit(ctx, actor, table if table is not None else read_table(ctx, file_bytes, filename),
                       campaign_id, class_unit_id)


def _commit(ctx: ServiceContext, actor: Actor, table: list[list[str]], campaign_id: uuid.UUID,
            class_unit_id: uuid.UUID | None) -> PaperPreview:
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        plan = _analyse(ctx, s, actor, table, campaign_id, class_unit_id)
        pv = plan.preview
        if pv.errors:
            raise ValidationFailed(N_("%(n)d row(s) have errors; nothing was imported"),
                                   errors=[e.as_dict() for e in pv.errors]
                                   + [{"row": line, "column": "关键条目", "message": CRITICAL_NOTE, "critical": True}
                                      for line in pv.critical_lines], params={"n": len(pv.errors)})
        flagged = _write(ctx, s, plan, campaign_id, now)
        _flag_paths(ctx, s, flagged, now, plan.with_previous)
        _mark_completed(s, plan.completed, campaign_id, now)
        audit.record(ctx, s, actor, "screening:paper_imported", "campaign", campaign_id,
                     {"rows": pv.rows, "responses": pv.responses, "items": pv.answers, "students": pv.students,
                      "flag_checks": pv.flagged, "instruments": sorted(pv.by_instrument)})
        uow.commit()
        return pv
