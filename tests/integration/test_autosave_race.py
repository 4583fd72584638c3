"""Two (or eight) tabs of one student autosave the same page at the same moment: every acknowledged
answer is in the sealed page afterwards (the compare-and-swap loser re-reads and re-applies), on
SQLite and on PostgreSQL, including the very first answer that creates the page."""

from __future__ import annotations

import json
import threading

import pytest
import sqlalchemy as sa
from screening_world import build_world, screening_ready

from mh_platform.core.instruments import load_instrument
from mh_platform.db.models import Response
from mh_platform.services import responses


def test_concurrent_tabs_lose_no_answer(fresh_ctx):
    ctx = fresh_ctx
    world = build_world(ctx)
    cid, codes, refused, _hts = screening_ready(ctx, world, per_class=3, refused=0)
    sid, code = next(iter(codes.items()))
    ac = responses.begin(ctx, code).sitting
    inst = load_instrument("k10")  # 10 items: one writer per item, all racing for the same row
    barrier = threading.Barrier(inst.n_items)
    acked: dict[str, int] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def tab(item: int) -> None:
        value = inst.item(item).options[-1].value
        barrier.wait()
        try:
            res = responses.save_answer(ctx, ac, "k10", item, value, item_ms=1500 + item)
        except Exception as exc:  # noqa: BLE001 - every failure is reported
            errors.append(repr(exc))
            return
        assert res.n_answered >= 1
        with lock:
            acked[str(item)] = value

    threads = [threading.Thread(target=tab, args=(i,)) for i in range(1, inst.n_items + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(acked) == inst.n_items
    with ctx.uow() as uow:
        s = uow.session
        r = s.scalar(sa.select(Response).where(Response.campaign_id == cid, Response.student_id == sid,
                                               Response.instrument_id == "k10"))
        stored = json.loads(ctx.keyring.open_field(s, r.answers_enc, table="response", column="answers_enc",
                                                   row_id=r.id))
        assert stored == acked and r.n_answered == inst.n_items
        assert r.item_ms == {str(i): 1500 + i for i in range(1, inst.n_items + 1)}
        assert s.scalar(sa.select(sa.func.count()).select_from(Response).where(
            Response.student_id == sid, Response.instrument_id == "k10")) == 1


def test_a_submitted_page_refuses_a_late_autosave(ctx):
    world = build_world(ctx)
    cid, codes, refused, _hts = screening_ready(ctx, world, per_class=2, refused=0)
    code = next(iter(codes.values()))
    ac = responses.begin(ctx, code).sitting
    inst = load_instrument("who5")
    responses.submit(ctx, ac, "who5", {str(it.number): it.options[0].value for it in inst.items})
    from mh_platform.core.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="submitted"):
        responses.save_answer(ctx, ac, "who5", 1, inst.item(1).options[-1].value)
