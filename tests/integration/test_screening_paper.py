"""Paper results import: scored by score_many exactly as the online engine scores, same flag path,
completion, and all-or-nothing with per-row errors."""

from __future__ import annotations

import json
import random

import pytest
import sqlalchemy as sa
from screening_world import build_world, screening_ready, to_csv

from mh_platform.core.errors import NotFound, ValidationFailed
from mh_platform.core.instruments import load_instrument
from mh_platform.core.scoring import score
from mh_platform.db.models import AccessCode, Flag, Response
from mh_platform.services import completion, paper_import, responses
from mh_platform.services.codes import normalise

BATTERY = ("phq9", "gad7", "asq", "k10", "who5")


@pytest.fixture
def ready(ctx):
    world = build_world(ctx)
    cid, codes, refused, hts = screening_ready(ctx, world, per_class=6, refused=1)
    return world, cid, codes, refused, hts


def numbers(ctx, ids):
    from mh_platform.db.models import Student

    with ctx.uow() as uow:
        s = uow.session
        return {sid: ctx.keyring.open_field(s, s.get(Student, sid).student_number_enc, table="student",
                                            column="student_number_enc", row_id=sid) for sid in ids}


def cell(inst, item, rng, critical=False):
    it = inst.item(item)
    crit = {c.item: c for c in inst.critical_items}.get(item)
    values = [o.value for o in it.options if crit is None or (o.value in crit.levels) == critical] or \
        [o.value for o in it.options]
    v = rng.choice(values)
    return {"yes": "是", "no": "否", "refused": "拒绝回答"}[v] if it.kind == "yes_no" else str(v)


def sheet(rows):
    width = max(load_instrument(i).n_items for i in BATTERY)
    header = ["学籍号", "量表"] + [str(n) for n in range(1, width + 1)]
    return to_csv(rows, header=header)


def test_paper_import_scores_flags_and_completes(ctx, ready):
    world, cid, codes, refused, hts = ready
    rng = random.Random(3)
    sids = list(codes)
    num = numbers(ctx, sids + refused)
    rows, expected = [], {}
    for k, sid in enumerate(sids[:4]):
        for iid in BATTERY:
            inst = load_instrument(iid)
            cells = [cell(inst, n, rng, critical=(k == 0 and iid == "phq9")) for n in range(1, inst.n_items + 1)]
            if k == 1 and iid == "gad7":
                cells[2] = ""  # one missing item: prorated like online
            rows.append([num[sid], iid] + cells)
            expected[(sid, iid)] = cells
    rows.append([num[sids[4]], "phq9"] + ["0"] * 10)  # a fifth student only did one page
    pv = paper_import.preview(ctx, world.counsellor, sheet(rows), "paper.csv", cid)
    assert pv.ok and pv.responses == 21 and pv.students == 5
    paper_import.commit(ctx, world.counsellor, sheet(rows), "paper.csv", cid)
    with ctx.uow() as uow:
        s = uow.session
        got = list(s.scalars(sa.select(Response).where(Response.campaign_id == cid)))
        assert len(got) == 21 and {r.source for r in got} == {"paper"}
        for r in got:
            answers = json.loads(ctx.keyring.open_field(s, r.answers_enc, table="response", column="answers_enc",
                                                        row_id=r.id))
            ref = score(load_instrument(r.instrument_id), answers)  # the one-at-a-time engine agrees
            assert r.total == (None if ref.total is None else float(ref.total))
            assert r.band_id == (ref.band.id if ref.band else None) and r.score_status == ref.status
            assert r.critical_fired == bool(ref.critical)
            assert r.concern_level == (ref.concern.value if ref.concern else None)
        assert s.scalar(sa.select(Flag).where(Flag.student_id == sids[0])) is not None  # the critical item's flag
        done = set(s.scalars(sa.select(AccessCode.student_id).where(AccessCode.campaign_id == cid,
                                                                     AccessCode.completed_at.is_not(None))))
        assert done == set(sids[:4])
    rep = completion.completion(ctx, world.counsellor, cid)
    assert (rep.unit.consented, rep.unit.started, rep.unit.completed) == (5, 5, 4)
    # the fifth student can finish online with their code; a paper-complete student's code no longer opens
    sess = responses.begin(ctx, codes[sids[4]])
    assert sess.current == "gad7"
    with pytest.raises(responses.CodeRejected):
        responses.begin(ctx, codes[sids[0]])
    # importing the same sheet again: every row is a duplicate, nothing written
    with pytest.raises(ValidationFailed) as e:
        paper_import.commit(ctx, world.counsellor, sheet(rows), "paper.csv", cid)
    assert len(e.value.errors) == 21


def test_bad_rows_are_reported_and_nothing_is_written(ctx, ready):
    world, cid, codes, refused, hts = ready
    sids = list(codes)
    num = numbers(ctx, sids + refused)
    ok = [num[sids[0]], "phq9"] + ["1"] * 10
    bad = [
        ([num[sids[1]], "phq9"] + ["1", "7"] + ["1"] * 8, "2"),  # not an option
        ([num[refused[0]], "phq9"] + ["1"] * 10, "学籍号"),  # no consent
        (["G99999999", "phq9"] + ["1"] * 10, "学籍号"),  # unknown student
        ([num[sids[2]], "scared"] + ["1"] * 10, "量表"),  # not in this student's battery
        ([num[sids[0]], "phq9"] + ["1"] * 10, "学籍号"),  # duplicate of the first row
        ([num[sids[3]], "asq", "是", "=cmd", "否", "否", "否"], "2"),  # formula text
    ]
    for row, column in bad:
        pv = paper_import.preview(ctx, world.counsellor, sheet([ok, row]), "p.csv", cid)
        assert [(e.row, e.column) for e in pv.errors] == [(3, column)], row
        with pytest.raises(ValidationFailed):
            paper_import.commit(ctx, world.counsellor, sheet([ok, row]), "p.csv", cid)
        with ctx.uow() as uow:
            assert uow.session.scalar(sa.select(sa.func.count()).select_from(Response)) == 0
    # another school's counsellor reaches none of these students
    pv = paper_import.preview(ctx, world.counsellor, sheet([ok]), "p.csv", cid)
    assert pv.ok
    with pytest.raises(NotFound):
        paper_import.preview(ctx, world.other_counsellor, sheet([ok]), "p.csv", cid)
    # a student who already answered online cannot get a paper response for the same page
    sess = responses.begin(ctx, codes[sids[5 - 1]])
    responses.save_answer(ctx, sess.access_code_id, "phq9", 1, 0)
    pv = paper_import.preview(ctx, world.counsellor, sheet([[num[sids[4]], "phq9"] + ["0"] * 10]), "p.csv", cid)
    assert [e.column for e in pv.errors] == ["量表"]
    assert normalise(codes[sids[0]])
