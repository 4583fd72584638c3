"""Recording one audit event is ONE statement — the INSERT — on SQLite and PostgreSQL (the id comes
from the table: no ``SELECT nextval(...)`` round trip first), and what it stores verifies."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy import event

from mh_platform.db.models import EventLog
from mh_platform.services import audit
from mh_platform.services.context import SYSTEM


def test_one_event_is_one_insert_and_verifies(ctx):
    with ctx.uow() as uow:
        s = uow.session
        conn = s.connection()
        seen: list[str] = []

        def watch(_conn, _cursor, statement, *_a) -> None:  # noqa: ANN001
            seen.append(" ".join(statement.split()).upper())

        event.listen(conn, "before_cursor_execute", watch)
        try:
            audit.record(ctx, s, SYSTEM, "test:one_insert", "response", uuid.uuid4(),
                         {"campaign_id": uuid.uuid4(), "instrument": "phq9", "说明": "中文", "x": 1.5})
            audit.record_many(ctx, s, SYSTEM, [("test:one_insert", None, None, {"n": n}) for n in range(3)])
        finally:
            event.remove(conn, "before_cursor_execute", watch)
        assert len(seen) == 2 and all(q.startswith("INSERT INTO EVENT_LOG") for q in seen), seen
        assert s.scalar(sa.select(sa.func.count()).select_from(EventLog).where(EventLog.kind == "test:one_insert")) == 4
        uow.commit()
    res = audit.verify(ctx)
    assert res.ok and res.pending >= 4
    assert audit.sequence(ctx).rejected == 0 and audit.verify(ctx).ok
