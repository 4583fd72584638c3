"""Demo data for the screening area (called by ``services.demo.seed`` after the base city exists).

Records consents for every screened student (about 3 % refused, 2 % not returned), a closed campaign
earlier this school year with scored responses — PHQ-9, GAD-7, K10 and WHO-5 answers from the risk
module's synthetic cohort, the other instruments from a simple seeded generator — that went through
the flag path, and an open campaign (this week) with about a fifth of its students finished. Codes of the
open campaign are printed by head teachers from the campaign page (codes are stored hashed only).
"""

from __future__ import annotations

import json
import random
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from mh_platform.core import batteries, scoring
from mh_platform.core.flag_rules import band_level
from mh_platform.core.instruments import load_instrument
from mh_platform.db.models import AccessCode, Campaign, CampaignUnit, Consent, Enrolment, Response, Student
from mh_platform.services import audit
from mh_platform.services.context import SYSTEM, ServiceContext
from mh_platform.services.keys import KeyService
from mh_platform.services.responses import flag_path

COHORT_INSTRUMENTS = ("phq9", "gad7", "k10", "who5")


def _campaign(s, demo, name: str, opens: datetime, closes: datetime, status: str, now: datetime) -> Campaign:
    rules = batteries.load_rules()
    camp = Campaign(id=uuid.uuid4(), name=name, academic_year_id=demo.year_id, owner_unit_id=demo.city.id,
                    created_by=None, grades=list(range(3, 13)), battery=batteries.rules_to_json(rules),
                    opens_at=opens, closes_at=closes, status=status, opened_at=opens,
                    closed_at=closes if status == "closed" else None, created_at=opens - timedelta(days=7))
    s.add(camp)
    s.flush()
    s.add(CampaignUnit(campaign_id=camp.id, unit_id=demo.city.id))
    s.flush()
    return camp


def _answers_matrix(iid: str, n: int, rng: random.Random, cohort_items: dict[str, np.ndarray] | None) -> np.ndarray:
    inst = load_instrument(iid)
    X = np.full((n, inst.n_items), np.nan)
    if cohort_items is not None and iid in cohort_items:
        src = cohort_items[iid][:n].astype(float)
        X[:, :src.shape[1]] = src
        return X
    for j, it in enumerate(inst.items):
        if it.kind == "yes_no":
            X[:, j] = [scoring.YES_NO_CODES["yes" if rng.random() < 0.004 else "no"] for _ in range(n)]
        else:
            vals = [o.value for o in it.options if isinstance(o.value, int)]
            w = [0.78, 0.17, 0.04, 0.01][:len(vals)] + [0.0] * max(0, len(vals) - 4)
            X[:, j] = rng.choices(vals, weights=w[:len(vals)], k=n)
    return X


def _write_responses(ctx: ServiceContext, s, uow, camp: Campaign, rng: random.Random,  # noqa: ANN001
                     cohort_items: dict[str, np.ndarray] | None, students: list[tuple], at: datetime,
                     source: str = "online") -> int:
    """Scored responses for ``students`` = [(id, grade, birth_year, school_id, unit_path)]."""
    rules = batteries.parse_rules(camp.battery)
    by_inst: dict[str, list[int]] = {}
    for k, (_sid, grade, by, _sch, _p) in enumerate(students):
        for iid in batteries.battery_for(rules, grade, batteries.age_on(by, camp.opens_at.year)):
            by_inst.setdefault(iid, []).append(k)
    keys = {}
    ks: KeyService = ctx.keyring
    n = 0
    for iid, idx in by_inst.items():
        inst = load_instrument(iid)
        X = _answers_matrix(iid, len(idx), rng, None if cohort_items is None else
                            {k: v[idx] for k, v in cohort_items.items()})
        bs = scoring.score_many(inst, X)
        rows, flagged = [], []
        for r, k in enumerate(idx):
            sid, _g, _by, school_id, _p = students[k]
            answers = {str(j + 1): ({0: "no", 1: "yes", 2: "refused"}[int(x)] if inst.items[j].kind == "yes_no" else int(x))
                       for j, x in enumerate(X[r]) if x == x}
            if sid not in keys:
                keys[sid] = ks.student_key(s, sid, at)
            rid = uuid.uuid4()
            t = bs.total[r]
            b = int(bs.band[r])
            row = {"id": rid, "campaign_id": camp.id, "student_id": sid, "school_unit_id": school_id,
                   "instrument_id": iid, "instrument_version": inst.version, "source": source, "status": "submitted",
                   "answers_enc": ks.seal_with(keys[sid], table="response", column="answers_enc", row_id=rid,
                                               value=json.dumps(answers, separators=(",", ":"))),
                   "n_answered": len(answers), "item_ms": None, "started_at": at, "updated_at": at, "submitted_at": at,
                   "total": None if t != t else float(t), "score_status": scoring.STATUS_CODES[int(bs.status[r])],
                   "band_id": bs.cutoff.bands[b].id if b >= 0 else None, "concern_level": None, "subscales": None,
                   "critical_fired": bool(bs.critical[r].any()) if bs.critical.size else False,
                   "critical_unanswered": False, "quality": {}, "quality_suggestion": None, "scored_at": at}
            band = bs.cutoff.bands[b] if b >= 0 else None
            if (band is not None and band_level(iid, band.id, band.concern) is not None) or row["critical_fired"]:
                res = scoring.score(inst, answers)
                row["concern_level"] = res.concern.value if res.concern else None
                flagged.append((row, res))
            else:
                rows.append(row)
        if rows:
            s.execute(sa.insert(Response), rows)
        for row, res in flagged:
            resp = Response(**row)
            s.add(resp)
            s.flush()
            # no synchronous hand-off: the scheduler's outbox job delivers the demo's notices
            flag_path(ctx, s, resp, res, at, trigger="submitted", uow=None)
        n += len(idx)
    return n


def seed(ctx: ServiceContext, rng: random.Random, now: datetime, demo: Any) -> dict[str, int]:
    with ctx.uow() as uow:
        s = uow.session
        studs = s.execute(sa.select(Student.id, Enrolment.grade_level, Student.birth_year, Enrolment.school_unit_id,
                                    Enrolment.unit_path, Enrolment.class_unit_id)
                          .join(Enrolment, Enrolment.student_id == Student.id)
                          .where(Enrolment.academic_year_id == demo.year_id, Enrolment.active.is_(True),
                                 Enrolment.grade_level >= 3,
                                 Enrolment.school_unit_id.in_(getattr(demo, "active_school_ids", None)
                                                              or [sc.id for sc in demo.schools]))
                          .order_by(Student.pseudonym)).all()
        consents, granted = [], []
        for sid, grade, by, sch, path, cls in studs:
            u = rng.random()
            status = "granted" if u < 0.95 else ("refused" if u < 0.98 else None)
            if status is None:
                continue
            consents.append({"id": uuid.uuid4(), "student_id": sid, "academic_year_id": demo.year_id, "status": status,
                             "method": rng.choice(["paper", "paper", "online"]), "decided_on": (now - timedelta(days=20)).date(),
                             "recorded_by": None, "recorded_at": now - timedelta(days=20), "withdrawn_at": None})
            if status == "granted":
                granted.append((sid, grade, by, sch, path, cls))
        if consents:
            s.execute(sa.insert(Consent), consents)
        # a closed campaign two to three weeks ago, 93 % completed
        closed = _campaign(s, demo, "秋季学期心理健康普测（演示）", now - timedelta(days=18), now - timedelta(days=11),
                           "closed", now)
        done_closed = [g for g in granted if rng.random() < 0.93]
        cohort_items = None
        secondary = [g for g in done_closed if g[1] >= 7]
        try:
            from mh_platform.risk.cohort import generate_cohort

            if secondary:
                c = generate_cohort(max(len(done_closed), 10), seed=rng.randrange(1 << 30), waves=1)
                cohort_items = {k: v[:len(done_closed)] for k, v in c.waves[0].items.items() if k in COHORT_INSTRUMENTS}
        except ImportError:  # the simple generator below is used instead
            cohort_items = None
        n_closed = _write_responses(ctx, s, uow, closed, rng, cohort_items,
                                    [(g[0], g[1], g[2], g[3], g[4]) for g in done_closed], now - timedelta(days=15))
        codes = [{"id": uuid.uuid4(), "campaign_id": closed.id, "student_id": g[0], "code_hash": secrets.token_bytes(32),
                  "class_unit_id": g[5], "created_at": closed.opens_at, "first_used_at": closed.opens_at,
                  "completed_at": closed.opens_at + timedelta(days=2), "revoked_at": None} for g in done_closed]
        if codes:
            s.execute(sa.insert(AccessCode), codes)
        # an open campaign this week (opened yesterday), about a fifth finished so far (codes for the rest are printed on slips)
        open_c = _campaign(s, demo, "冬季心理健康复测（演示）", now - timedelta(days=1), now + timedelta(days=6), "open", now)
        done_open = [g for g in granted if rng.random() < 0.2]
        n_open = _write_responses(ctx, s, uow, open_c, rng, None,
                                  [(g[0], g[1], g[2], g[3], g[4]) for g in done_open], now - timedelta(hours=6))
        codes = [{"id": uuid.uuid4(), "campaign_id": open_c.id, "student_id": g[0], "code_hash": secrets.token_bytes(32),
                  "class_unit_id": g[5], "created_at": open_c.opens_at, "first_used_at": now - timedelta(hours=7),
                  "completed_at": now - timedelta(hours=6), "revoked_at": None} for g in done_open]
        if codes:
            s.execute(sa.insert(AccessCode), codes)
        audit.record(ctx, s, SYSTEM, "demo:screening_seeded", "campaign", open_c.id,
                     {"consents": len(consents), "closed_responses": n_closed, "open_responses": n_open})
        uow.commit()
    return {"consents": len(consents), "closed_responses": n_closed, "open_responses": n_open}
