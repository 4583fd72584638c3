"""T10: concurrent writers append to the chain without gaps or forks; the chain verifies."""

import threading

import sqlalchemy as sa

from mh_platform.db.models import EventLog
from mh_platform.services import audit
from mh_platform.services.context import SYSTEM


def test_eight_concurrent_writers(fresh_ctx):
    ctx = fresh_ctx
    errors: list[str] = []

    def writer(n: int) -> None:
        for i in range(60):
            try:
                with ctx.uow() as uow:
                    audit.record(ctx, uow.session, SYSTEM, "test:event", "thing", None, {"writer": n, "i": i})
                    uow.commit()
            except Exception as exc:  # noqa: BLE001 - every failure is reported
                errors.append(repr(exc))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with ctx.uow() as uow:
        seqs = list(uow.session.scalars(sa.select(EventLog.seq).order_by(EventLog.seq)))
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 480
    res = audit.verify(ctx)
    assert res.ok and res.checked == len(seqs)
