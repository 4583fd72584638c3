"""``audit.record_riding``: the event rides on a statement the caller runs anyway (a data-modifying
CTE on PostgreSQL), is written exactly once, commits and rolls back with the transaction, and is
chained and verified like any other event."""

from __future__ import annotations

import sqlalchemy as sa

from mh_platform.db.models import EventLog
from mh_platform.services import audit
from mh_platform.services.context import SYSTEM


def _events(ctx, kind: str) -> list[tuple]:
    with ctx.uow() as uow:
        return [(e.object_type, e.object_id, e.data, e.seq)
                for e in uow.session.scalars(sa.select(EventLog).where(EventLog.kind == kind))]


def test_riding_event_is_written_once_with_the_statement_result(ctx):
    with ctx.uow() as uow:
        s = uow.session
        q = sa.select(sa.bindparam("x", type_=sa.Integer) + 1)
        res = audit.record_riding(ctx, s, q, audit.riding(q), {"x": 41}, SYSTEM, "test:riding", "thing", "t-1",
                                  {"n": 3})
        assert res.scalar_one() == 42
        uow.commit()
    got = _events(ctx, "test:riding")
    assert got == [("thing", "t-1", {"n": 3}, None)]
    assert audit.sequence(ctx).rejected == 0
    res = audit.verify(ctx)
    assert res.ok and res.pending == 0
    assert _events(ctx, "test:riding")[0][3] is not None


def test_riding_event_rolls_back_with_its_transaction(ctx):
    with ctx.uow() as uow:
        q = sa.select(sa.literal(1))
        audit.record_riding(ctx, uow.session, q, audit.riding(q), {}, SYSTEM, "test:riding_rb", None, None)
        # no commit: the unit of work rolls back
    assert _events(ctx, "test:riding_rb") == []
