"""The one-event audit INSERT (services.audit._write for a single entry) stores exactly what
SQLAlchemy's own insert of the same entry stores, on SQLite and PostgreSQL, and the entries verify."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from mh_platform.db.models import EventLog
from mh_platform.services import audit
from mh_platform.services.context import SYSTEM, Actor

COLUMNS = ("at", "actor_user_id", "kind", "object_type", "object_id", "data", "entry_mac")


def test_the_prepared_single_insert_stores_what_sqlalchemy_would(ctx):
    from screening_world import build_world

    from mh_platform.core.types import Role
    from mh_platform.services import auth

    world = build_world(ctx)
    uid = auth.create_user(ctx, SYSTEM, username="audit.writer", password="correct horse 1",  # noqa: S106
                           role=Role.COUNSELLOR, unit_id=world.school.id)
    actor = Actor(user_id=uid, role=Role.COUNSELLOR, unit_id=world.school.id, username="audit.writer")
    cases = [
        (SYSTEM, "screening:response_submitted", "response", uuid.uuid4(),
         {"campaign_id": uuid.uuid4(), "instrument": "phq9", "status": "complete", "n": 3, "nested": {"a": [1, 2]}}),
        (actor, "case:opened", None, None, None),
        (None, "汉字:事件", "学生", "id-1", {"说明": "中文", "x": 1.5, "none": None}),
    ]
    with ctx.uow() as uow:
        s = uow.session
        ids = []
        for who, kind, otype, oid, data in cases:
            entry = audit._entry(ctx, who, ctx.now(), kind, otype, oid, data)
            audit._write(s, entry)  # the prepared statement
            s.connection().execute(audit._INSERT, entry)  # SQLAlchemy's own insert, for comparison
            ids.append(kind)
        rows = s.execute(sa.select(EventLog).where(EventLog.kind.in_(ids)).order_by(EventLog.id)).scalars().all()
        assert len(rows) == 2 * len(cases)
        for mine, theirs in zip(rows[0::2], rows[1::2], strict=True):
            for c in COLUMNS:
                assert getattr(mine, c) == getattr(theirs, c), c
        raw = s.connection().exec_driver_sql(
            "SELECT CAST(at AS VARCHAR(64)), CAST(data AS VARCHAR(4000)), actor_user_id, object_id FROM event_log "
            f"WHERE kind IN ({', '.join(repr(k) for k in ids)}) ORDER BY id").all()
        for a, b in zip(raw[0::2], raw[1::2], strict=True):
            assert tuple(a) == tuple(b)  # the stored text itself, not only what it reads back as
        uow.commit()
    res = audit.verify(ctx)
    assert res.ok and res.pending >= 2 * len(cases)
