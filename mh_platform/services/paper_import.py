"""Paper results: a CSV/XLSX of item answers (one row per student and instrument), scored by the
vectorised engine (``core.scoring.score_many``), through the same quality checks and flag path as
online answers, written in ONE transaction — or nothing at all when any row has an error.

File: columns ``学籍号`` (student number), ``量表`` (instrument id, e.g. ``phq9``) and one column per
item named by its number (``1``, ``2``, … or ``q1``/``第1题``). Choice items take the printed option
value; yes/no items ``是``/``否``/``拒绝回答`` (or yes/no/refused). A blank cell is an unanswered item.
Each student must be eligible for the campaign, in the importer's scope (and in the class, if one
is given), have consent, have the instrument in their battery and no response to it yet.

The bulk path: one blind-index look-up per student, set-based checks, a float matrix per instrument
scored at once, per-student data keys unwrapped once, answers sealed per response, rows inserted with
``executemany``; only responses that can raise a flag (a band with a concern, a critical item, or a
previous screening to compare with) go through the per-response flag path.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from mh_platform.core import scoring
from mh_platform.core.errors import Forbidden, InvalidTransition, NotFound, ValidationFailed
from mh_platform.core.instruments import Instrument, load_instrument
from mh_platform.core.types import Role, UnitKind
from mh_platform.crypto import keyring as kr
from mh_platform.db.models import AccessCode, Consent, DataKey, Enrolment, OrgUnit, Response, Student
from mh_platform.services import audit
from mh_platform.services.access import in_scope
from mh_platform.services.campaigns import get_campaign, student_battery
from mh_platform.services.context import Actor, ServiceContext
from mh_platform.services.keys import KeyService
from mh_platform.services.responses import flag_path
from mh_platform.services.roster import ImportRefused, RowError, formula_like, map_header, read_table

IMPORTERS = {Role.COUNSELLOR}
YES_NO = {"是": "yes", "否": "no", "拒绝回答": "refused", "拒答": "refused", "yes": "yes", "no": "no",
          "refused": "refused", "y": "yes", "n": "no"}
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

    @property
    def ok(self) -> bool:
        return not self.errors and self.rows > 0

    def summary(self) -> dict[str, Any]:
        return {"rows": self.rows, "responses": self.responses, "answers": self.answers, "students": self.students,
                "by_instrument": dict(self.by_instrument), "errors": len(self.errors), "flag_checks": self.flagged}


def _item_col(h: str) -> int | None:
    t = h.strip().lower().removeprefix("q").removeprefix("item").removeprefix("第").removesuffix("题").strip()
    return int(t) if t.isdigit() and 0 < int(t) <= 200 else None


@dataclass
class _Parsed:
    rows: list[tuple[int, str, str, list[str]]]  # (line, number, instrument, cells by item 1..)
    item_cols: dict[int, int]


def _parse(table: list[list[str]]) -> _Parsed:
    start = 0
    while start < len(table) and not any(c.strip() for c in table[start]):
        start += 1
    if start >= len(table):
        raise ImportRefused("the file has no header row")
    header = table[start]
    cols = map_header(header, COLUMNS, ("student_number", "instrument"))
    items = {n: i for i, h in enumerate(header) if (n := _item_col(h)) is not None}
    if not items:
        raise ImportRefused("no item columns (1, 2, 3 … or q1, q2 …)")
    rows = []
    sn, ins = cols["student_number"], cols["instrument"]
    for line, r in enumerate(table[start + 1:], start=start + 2):
        if not any((c or "").strip() for c in r):
            continue
        get = r.__getitem__
        n = len(r)
        rows.append((line, get(sn).strip() if sn < n else "", (get(ins).strip().lower() if ins < n else ""),
                     [(get(i).strip() if i < n else "") for i in range(len(header))]))
    if not rows:
        raise ImportRefused("the file has no data rows")
    return _Parsed(rows, items)


def _value_maps(inst: Instrument) -> list[dict[str, float]]:
    """Per item: cell text → batch-matrix code (printed value, or YES_NO_CODES)."""
    maps = []
    for it in inst.items:
        m: dict[str, float] = {}
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


def _student_keys(ctx: ServiceContext, s: Session, ids: list[uuid.UUID]) -> dict[uuid.UUID, kr.DataKey]:
    ks: KeyService = ctx.keyring
    out: dict[uuid.UUID, kr.DataKey] = {}
    for i in range(0, len(ids), 900):
        for row in s.scalars(sa.select(DataKey).where(DataKey.student_id.in_(ids[i:i + 900]), DataKey.active.is_(True))):
            if row.student_id is None or row.wrapped is None:  # matched by student id, active: never shredded
                raise ValueError(f"data key {row.id}: an active student key without its student or material")
            out[row.student_id] = ks.keyring.unwrap(kr.WrappedDataKey(row.id, kr.KeyPurpose(row.purpose), row.student_id,
                                                                       row.master_key_id, bytes(row.wrapped)))
    missing = [sid for sid in ids if sid not in out]
    for sid in missing:  # a student who never had a key yet (created on first use, as online)
        out[sid] = ks.student_key(s, sid, ctx.now())
    return out


@dataclass
class _Plan:
    preview: PaperPreview
    inserts: list[dict[str, Any]]
    flag_rows: list[tuple[dict[str, Any], scoring.ScoreResult]]
    completed: list[tuple[uuid.UUID, uuid.UUID]]  # (student, class) whose battery is now complete


def _analyse(ctx: ServiceContext, s: Session, actor: Actor, table: list[list[str]], campaign_id: uuid.UUID,
             class_unit_id: uuid.UUID | None) -> _Plan:
    if actor.role not in IMPORTERS or not actor.unit_path:
        raise Forbidden("paper results are imported by the school counsellor")
    pv = PaperPreview()
    err = pv.errors.append
    camp, units = get_campaign(s, actor, campaign_id)
    if camp.status not in ("open", "closed"):
        raise InvalidTransition("paper results are accepted once the campaign has opened")
    scope_path = actor.unit_path
    if class_unit_id is not None:
        cls = s.get(OrgUnit, class_unit_id)
        if cls is None or cls.kind != UnitKind.CLASS.value or not in_scope(actor, cls.path):
            raise NotFound("class not found")
        scope_path = cls.path
    parsed = _parse(table)
    pv.rows = len(parsed.rows)
    # students: one blind index per distinct number, one query per 900
    numbers = {}
    for _line, num, _i, _c in parsed.rows:
        if num and num not in numbers:
            try:
                numbers[num] = ctx.keyring.blind_index(s, "student_number", num)
            except ValueError:
                numbers[num] = None
    by_bidx: dict[bytes, tuple] = {}
    bidxs = [b for b in numbers.values() if b is not None]

    # three index-driven look-ups per chunk (student by blind index, enrolment by student, consent by
    # student); eligibility and scope are then checked in Python on the few columns fetched
    grades = {int(g) for g in camp.grades}
    unit_paths = tuple(u.path for u in units)
    for i in range(0, len(bidxs), 900):
        studs = {sid: (b, by) for b, sid, by in s.execute(
            sa.select(Student.student_number_bidx, Student.id, Student.birth_year)
            .where(Student.student_number_bidx.in_(bidxs[i:i + 900]), Student.erased_at.is_(None)))}
        if not studs:
            continue
        ids = list(studs)
        consented = set(s.scalars(sa.select(Consent.student_id).where(
            Consent.student_id.in_(ids), Consent.academic_year_id == camp.academic_year_id,
            Consent.status == "granted", Consent.withdrawn_at.is_(None))))
        for sid, grade, cls_id, school_id, path in s.execute(
                sa.select(Enrolment.student_id, Enrolment.grade_level, Enrolment.class_unit_id,
                          Enrolment.school_unit_id, Enrolment.unit_path)
                .where(Enrolment.student_id.in_(ids), Enrolment.academic_year_id == camp.academic_year_id,
                       Enrolment.active.is_(True))):
            if grade not in grades or not path.startswith(unit_paths) or not path.startswith(scope_path):
                continue
            b, by = studs[sid]
            by_bidx[b] = (sid, by, grade, cls_id, school_id, path, sid in consented)
    sids = [v[0] for v in by_bidx.values()]
    existing: set[tuple[uuid.UUID, str]] = set()
    done_before: dict[uuid.UUID, set[str]] = defaultdict(set)
    for i in range(0, len(sids), 900):
        for sid, iid, st in s.execute(sa.select(Response.student_id, Response.instrument_id, Response.status)
                                      .where(Response.campaign_id == camp.id, Response.student_id.in_(sids[i:i + 900]))):
            existing.add((sid, iid))
            if st == "submitted":
                done_before[sid].add(iid)
    insts: dict[str, Instrument] = {}
    groups: dict[str, list[tuple[int, tuple, list[str]]]] = defaultdict(list)
    seen: dict[tuple[uuid.UUID, str], int] = {}
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
        sid, birth_year, grade, _cls, _sch, _path, ok = st
        if not ok:
            err(RowError(line, "学籍号", "该学生没有有效的监护人知情同意 / no guardian consent"))
            continue
        key = (grade, birth_year)
        if key not in battery_cache:
            battery_cache[key] = student_battery(camp, grade, birth_year)
        if iid not in battery_cache[key]:
            err(RowError(line, "量表", "该量表不在此学生的测评组合中 / instrument not in the student's battery"))
            continue
        if (sid, iid) in existing:
            err(RowError(line, "量表", "该学生已有此量表的作答 / the student already has a response to it"))
            continue
        if (sid, iid) in seen:
            err(RowError(line, "学籍号", f"与第{seen[(sid, iid)]}行重复 / same student and instrument as row {seen[(sid, iid)]}"))
            continue
        seen[(sid, iid)] = line
        if iid not in insts:
            insts[iid] = load_instrument(iid)
        groups[iid].append((line, st, cells))
    inserts: list[dict[str, Any]] = []
    flag_rows: list[tuple[dict[str, Any], scoring.ScoreResult]] = []
    now = ctx.now()
    keys = _student_keys(ctx, s, list({st[0] for g in groups.values() for _l, st, _c in g}))
    prev: set[tuple[uuid.UUID, str]] = set()
    all_sids = list({st[0] for g in groups.values() for _l, st, _c in g})
    for i in range(0, len(all_sids), 900):
        prev |= set(s.execute(sa.select(Response.student_id, Response.instrument_id).where(
            Response.student_id.in_(all_sids[i:i + 900]), Response.campaign_id != camp.id,
            Response.status == "submitted", Response.total.is_not(None))).tuples().all())
    seal = KeyService.seal_with
    new_done: dict[uuid.UUID, set[str]] = defaultdict(set)
    for iid, rows in groups.items():
        inst = insts[iid]
        maps = _value_maps(inst)
        k = inst.n_items
        cols = [parsed.item_cols.get(n) for n in range(1, k + 1)]
        extra = [n for n in parsed.item_cols if n > k]
        X = np.full((len(rows), k), np.nan)
        good = np.ones(len(rows), dtype=bool)
        for r, (line, _st, cells) in enumerate(rows):
            for n in extra:
                if cells[parsed.item_cols[n]]:
                    err(RowError(line, str(n), f"{iid} 没有第{n}题 / {iid} has no item {n}"))
                    good[r] = False
            for j, c in enumerate(cols):
                if c is None:
                    continue
                cell = cells[c]
                if not cell:
                    continue
                v = maps[j].get(cell)
                if v is None:
                    why = "以 = + - @ 开头的内容不允许（公式） / formula-like text refused" if formula_like(cell) else \
                        "不是该题的选项 / not an option of this item"
                    err(RowError(line, str(j + 1), why))
                    good[r] = False
                    continue
                X[r, j] = v
        if not good.all():
            continue
        bs = scoring.score_many(inst, X)
        band_concern = [b.concern for b in bs.cutoff.bands]
        band_ids = [b.id for b in bs.cutoff.bands]
        status_codes = scoring.STATUS_CODES
        sub_ids = list(bs.subscales)
        any_crit = np.asarray(bs.critical.any(axis=1) if bs.critical.size else np.zeros(len(rows), dtype=bool),
                              dtype=bool)
        any_unans = np.asarray(bs.critical_unanswered.any(axis=1) if bs.critical_unanswered.size
                               else np.zeros(len(rows), dtype=bool), dtype=bool)
        answered = (~np.isnan(X)).sum(axis=1)
        pv.by_instrument[iid] = len(rows)
        for r, (_line, st, _cells) in enumerate(rows):
            sid, _by, _g, _cls, school_id, path, _ok = st
            rid = uuid.uuid4()
            answers: dict[str, Any] = {}
            for j in range(k):
                x = X[r, j]
                if x == x:  # not NaN
                    item = inst.items[j]
                    answers[str(j + 1)] = ({0: "no", 1: "yes", 2: "refused"}[int(x)] if item.kind == "yes_no" else int(x))
            b = int(bs.band[r])
            crit = bool(any_crit[r])
            t = bs.total[r]
            quality = {"longstring": _longstring(inst, X[r])}
            row = {"id": rid, "campaign_id": camp.id, "student_id": sid, "school_unit_id": school_id, "unit_path": path,
                   "instrument_id": iid, "instrument_version": inst.version, "source": "paper", "status": "submitted",
                   "answers_enc": seal(keys[sid], table="response", column="answers_enc", row_id=rid,
                                       value=json.dumps(answers, separators=(",", ":"))),
                   "n_answered": int(answered[r]), "item_ms": None, "started_at": now, "updated_at": now,
                   "submitted_at": now, "total": None if t != t else float(t),
                   "score_status": status_codes[int(bs.status[r])], "band_id": band_ids[b] if b >= 0 else None,
                   "concern_level": None,
                   "subscales": ({sid_: {"score": None if bs.subscales[sid_][r] != bs.subscales[sid_][r]
                                         else int(bs.subscales[sid_][r]),
                                         "positive": None if bs.subscales[sid_][r] != bs.subscales[sid_][r]
                                         else bool(bs.subscale_positive[sid_][r])} for sid_ in sub_ids} or None),
                   "critical_fired": crit, "critical_unanswered": bool(any_unans[r]), "quality": quality,
                   "quality_suggestion": "readminister" if quality["longstring"] else None, "scored_at": now}
            concern = band_concern[b] if b >= 0 else None
            if crit or any_unans[r] or concern is not None or (sid, iid) in prev:
                # the few rows that can raise a flag get the full one-at-a-time result (critical levels
                # included: BatchScores.result leaves the fired items' levels out)
                res = scoring.score(inst, answers)
                lv = res.concern
                row["concern_level"] = lv.value if lv else None
                flag_rows.append((row, res))
            else:
                inserts.append(row)
            pv.responses += 1
            pv.answers += int(answered[r])
            new_done[sid].add(iid)
    pv.students = len(new_done)
    pv.flagged = len(flag_rows)
    completed = []
    for st in by_bidx.values():
        sid = st[0]
        if sid in new_done:
            battery = battery_cache[(st[2], st[1])]
            if set(battery) <= (new_done[sid] | done_before[sid]):
                completed.append((sid, st[3]))
    return _Plan(pv, inserts, flag_rows, completed)


def _longstring(inst: Instrument, row: np.ndarray) -> bool:
    if inst.n_items < 7 or np.isnan(row).any():
        return False
    if inst.items[0].kind != "choice":
        return False
    lo = min(o.value for o in inst.items[0].options if isinstance(o.value, int))
    return bool((row == row[0]).all() and row[0] != lo)


def preview(ctx: ServiceContext, actor: Actor, file_bytes: bytes, filename: str, campaign_id: uuid.UUID,
            class_unit_id: uuid.UUID | None = None) -> PaperPreview:
    table = read_table(ctx, file_bytes, filename)
    with ctx.uow() as uow:
        return _analyse(ctx, uow.session, actor, table, campaign_id, class_unit_id).preview


def commit(ctx: ServiceContext, actor: Actor, file_bytes: bytes, filename: str, campaign_id: uuid.UUID,
           class_unit_id: uuid.UUID | None = None, *, table: list[list[str]] | None = None) -> PaperPreview:
    """Import in one transaction (answers, scores, flags); any row error → ValidationFailed, nothing written."""
    table = table if table is not None else read_table(ctx, file_bytes, filename)
    with ctx.uow() as uow:
        s = uow.session
        now = ctx.now()
        plan = _analyse(ctx, s, actor, table, campaign_id, class_unit_id)
        pv = plan.preview
        if pv.errors:
            raise ValidationFailed(f"{len(pv.errors)} row(s) have errors; nothing was imported",
                                   [e.as_dict() for e in pv.errors])
        conn = s.connection()  # Core executemany: no ORM unit-of-work bookkeeping per row
        for i in range(0, len(plan.inserts), 5000):
            conn.execute(sa.insert(cast(sa.Table, Response.__table__)), plan.inserts[i:i + 5000])
        for row, res in plan.flag_rows:
            resp = Response(**row)
            s.add(resp)
            s.flush()
            flag_path(ctx, s, resp, res, now, trigger="submitted", uow=uow)
        # the whole battery on paper (or partly online before) counts as completed
        if plan.completed:
            have = {sid: ac for sid, ac in s.execute(sa.select(AccessCode.student_id, AccessCode.id).where(
                AccessCode.campaign_id == campaign_id, AccessCode.student_id.in_([c[0] for c in plan.completed])))}
            import secrets

            new_codes = []
            for sid, cls_id in plan.completed:
                if sid in have:
                    s.execute(sa.update(AccessCode).where(AccessCode.id == have[sid], AccessCode.completed_at.is_(None))
                              .values(completed_at=now))
                else:  # no code was ever issued: a completion marker that no typed code can match
                    new_codes.append({"id": uuid.uuid4(), "campaign_id": campaign_id, "student_id": sid,
                                      "code_hash": secrets.token_bytes(32), "class_unit_id": cls_id, "created_at": now,
                                      "first_used_at": now, "completed_at": now, "revoked_at": now})
            if new_codes:
                s.execute(sa.insert(AccessCode), new_codes)
        audit.record(ctx, s, actor, "screening:paper_imported", "campaign", campaign_id,
                     {"rows": pv.rows, "responses": pv.responses, "items": pv.answers, "students": pv.students,
                      "flag_checks": pv.flagged, "instruments": sorted(pv.by_instrument)})
        uow.commit()
        return pv

