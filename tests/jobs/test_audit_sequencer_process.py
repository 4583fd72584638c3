"""The audit sequencer as a real scheduler job: two ``mhp scheduler run`` processes, events written
while they run, the leader SIGKILLed after it has chained some: the survivor chains the rest, and the
chain is gapless and verifies with every event in it exactly once."""

from __future__ import annotations

import signal
import sys
import threading
import time

import pytest
import sqlalchemy as sa

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from procs_helpers import Proc, mhp_env  # noqa: E402

from mh_platform.db.models import EventLog  # noqa: E402
from mh_platform.services import audit  # noqa: E402
from mh_platform.services.context import SYSTEM  # noqa: E402

pytestmark = pytest.mark.slow


def _counts(ctx) -> tuple[int, int]:
    """(chained, pending) from ONE statement: two statements would see two snapshots on PostgreSQL
    (READ COMMITTED), and the sequencer may chain entries in between."""
    q = sa.select(sa.func.coalesce(sa.func.sum(sa.case((EventLog.seq > 0, 1), else_=0)), 0),
                  sa.func.coalesce(sa.func.sum(sa.case((EventLog.seq.is_(None), 1), else_=0)), 0))
    with ctx.engine.connect() as c:
        chained, pending = c.execute(q).one()
    return int(chained), int(pending)


def test_two_sequencers_one_killed_chain_every_event_once(fresh_ctx, fresh_db_url, master_key_file, tmp_path):
    ctx = fresh_ctx
    env = mhp_env(fresh_db_url, master_key_file)
    args = ["scheduler", "run", "--only", "audit_sequence", "--tick", "1", "--retry", "0.2", "--heartbeat", "0.5"]
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        i = 0
        while not stop.is_set():
            with ctx.uow() as uow:
                audit.record(ctx, uow.session, SYSTEM, "test:seq_proc", "thing", str(i), {"i": i})
                uow.commit()
            i += 1
            written[0] = i
            time.sleep(0.005)

    p1 = Proc(args, env, tmp_path / "a1.log")
    p2 = Proc(args, env, tmp_path / "a2.log")
    w = threading.Thread(target=writer)
    w.start()
    killed = None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and killed is None:
            chained, _pending = _counts(ctx)
            if chained > 0:
                leaders = [p for p in (p1, p2) if '"scheduler": "leader"' in p.text()]
                assert len(leaders) == 1, "exactly one leader"
                killed = leaders[0]
                killed.p.send_signal(signal.SIGKILL)
                killed.p.wait(10)
            time.sleep(0.05)
        assert killed is not None, "no entry was chained by the first leader"
        time.sleep(1.0)
        stop.set()
        w.join()
        survivor = p2 if killed is p1 else p1
        assert survivor.wait_for('"scheduler": "leader"', 30), survivor.text()
        while time.monotonic() < deadline:
            chained, pending = _counts(ctx)
            if pending == 0:
                break
            time.sleep(0.2)
        assert pending == 0, survivor.text()
    finally:
        stop.set()
        for p in (p1, p2):
            p.stop()
    assert written[0] > 0 and chained == written[0]
    with ctx.engine.connect() as c:
        seqs = list(c.execute(sa.select(EventLog.seq).order_by(EventLog.seq)).scalars())
        ids = list(c.execute(sa.select(EventLog.object_id).where(EventLog.kind == "test:seq_proc")).scalars())
    assert seqs == list(range(1, len(seqs) + 1))  # gapless, no fork, nothing chained twice
    assert sorted(ids, key=int) == [str(i) for i in range(written[0])]
    res = audit.verify(ctx)
    assert res.ok and res.checked == written[0] and res.pending == 0
