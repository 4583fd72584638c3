"""T10: concurrent writers and concurrent sequencers: the chain has no gaps or forks and verifies."""

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

    done = threading.Event()

    def sequencer() -> None:  # two sequencers race each other and the writers
        while not done.is_set():
            try:
                audit.sequence(ctx, batch=50)
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    seqs_threads = [threading.Thread(target=sequencer) for _ in range(2)]
    for t in threads + seqs_threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    for t in seqs_threads:
        t.join()
    audit.sequence(ctx)
    assert errors == []
    with ctx.uow() as uow:
        seqs = list(uow.session.scalars(sa.select(EventLog.seq).order_by(EventLog.seq)))
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 480
    res = audit.verify(ctx)
    assert res.ok and res.checked == len(seqs)
