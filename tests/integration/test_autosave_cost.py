"""What keeps the autosave cheap without changing what it does: its statements are compiled once per
process (SQLAlchemy's statement cache), and it still writes the page as given."""

from __future__ import annotations

import json

import sqlalchemy as sa
from screening_world import build_world, screening_ready
from sqlalchemy.sql import compiler

from mh_platform.core.instruments import load_instrument
from mh_platform.db.models import Response
from mh_platform.services import responses


def _stored(ctx, student_id, instrument: str) -> tuple[dict, dict]:
    """The page's opened answers and its other columns."""
    with ctx.uow() as uow:
        s = uow.session
        r = s.scalar(sa.select(Response).where(Response.student_id == student_id, Response.instrument_id == instrument))
        cols = {k: getattr(r, k) for k in ("n_answered", "item_ms", "status", "instrument_version", "source",
                                           "critical_fired")}
        return json.loads(ctx.keyring.open_field(s, r.answers_enc, table="response", column="answers_enc",
                                                 row_id=r.id)), cols


def test_the_first_answer_of_a_page_reuses_one_compiled_insert(ctx, monkeypatch):
    world = build_world(ctx)
    _cid, codes, _refused, _hts = screening_ready(ctx, world, per_class=3, refused=0)
    entered = [(sid, responses.begin(ctx, code).access_code_id) for sid, code in list(codes.items())[:3]]
    sid0, ac0 = entered[0]
    responses.save_answer(ctx, ac0, "phq9", 1, 1, item_ms=1200)  # compiles (and caches) once in this process
    compiled: list[str] = []
    init = compiler.SQLCompiler.__init__

    def counting(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003
        init(self, *a, **kw)
        compiled.append(self.string)

    monkeypatch.setattr(compiler.SQLCompiler, "__init__", counting)
    for _sid, ac in entered[1:]:
        res = responses.save_answer(ctx, ac, "phq9", 2, 3, item_ms=900)
        assert res.n_answered == 1
    assert [sql for sql in compiled if sql.startswith("INSERT INTO response")] == []
    monkeypatch.setattr(compiler.SQLCompiler, "__init__", init)
    for sid, _ac in entered[1:]:
        answers, r = _stored(ctx, sid, "phq9")
        assert answers == {"2": 3}
        assert r == {"n_answered": 1, "item_ms": {"2": 900}, "status": "in_progress", "source": "online",
                     "instrument_version": load_instrument("phq9").version, "critical_fired": False}
    assert _stored(ctx, sid0, "phq9")[0] == {"1": 1}


def test_the_insert_names_every_column_the_plan_fills():
    assert set(responses._INSERT_COLUMNS) <= {c.name for c in responses._RESP.c}
    assert len(set(responses._INSERT_COLUMNS)) == len(responses._INSERT_COLUMNS)
