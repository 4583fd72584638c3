"""The SQLite write gate (db.engine.SQLiteWriteGate): writers queue on an OS file lock before
BEGIN IMMEDIATE and pass it on when their COMMIT or ROLLBACK has run.

Each test uses its own SQLite file (whatever database the suite runs on). To show that the gate — not
SQLite's polling busy handler — does the queuing, the engines here set ``busy_timeout = 0``: without the
gate, a second writer would fail at once with "database is locked"."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from mh_platform.db.engine import make_engine, write_gate


def _engine(path, busy_ms: int = 0) -> sa.Engine:
    eng = make_engine(f"sqlite:///{path}")

    @event.listens_for(eng, "connect")
    def _no_busy_wait(dbapi_conn, _rec):  # runs after the engine's own PRAGMAs
        dbapi_conn.execute(f"PRAGMA busy_timeout={busy_ms}")

    return eng


def _setup(path) -> None:
    eng = _engine(path, busy_ms=5000)
    with eng.begin() as c:
        c.exec_driver_sql("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        c.exec_driver_sql("INSERT INTO counter VALUES (1, 0)")
    eng.dispose()


def _bump(path: str, times: int, errors) -> None:
    eng = _engine(path)
    try:
        for _ in range(times):
            with eng.begin() as c:  # read-modify-write: lost updates if two ran at once
                n = c.exec_driver_sql("SELECT n FROM counter WHERE id = 1").scalar_one()
                c.exec_driver_sql("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))
    except Exception as exc:  # noqa: BLE001 - reported to the test
        errors.put(repr(exc))
    finally:
        eng.dispose()


def _count(path) -> int:
    eng = _engine(path, busy_ms=5000)
    with eng.connect() as c:
        n = c.exec_driver_sql("SELECT n FROM counter WHERE id = 1").scalar_one()
    eng.dispose()
    return n


def test_writers_in_several_processes_and_threads_queue_on_the_gate(tmp_path):
    path = tmp_path / "g.sqlite3"
    _setup(path)
    _bump(str(path), 5, mp.Queue())  # the parent uses the gate before forking: children must re-open it
    ctx = mp.get_context("fork")
    errors = ctx.Queue()
    procs = [ctx.Process(target=_bump, args=(str(path), 150, errors)) for _ in range(4)]
    threads = [threading.Thread(target=_bump, args=(str(path), 150, errors)) for _ in range(3)]
    for p in procs:
        p.start()
    for t in threads:
        t.start()
    for p in procs:
        p.join(120)
    for t in threads:
        t.join(120)
    got = []
    while not errors.empty():
        got.append(errors.get())
    assert got == []  # with busy_timeout 0, any writer meeting the lock held would have failed
    assert _count(path) == 5 + 7 * 150
    assert (tmp_path / "g.sqlite3.writelock").exists()


def test_the_gate_is_released_after_a_failed_transaction(tmp_path):
    path = tmp_path / "r.sqlite3"
    _setup(path)
    eng = _engine(path)
    with pytest.raises(sa.exc.IntegrityError), eng.begin() as c:
        c.exec_driver_sql("INSERT INTO counter VALUES (1, 5)")  # duplicate key: rolled back
    done = threading.Event()
    threading.Thread(target=lambda: (_bump(str(path), 1, mp.Queue()), done.set())).start()
    assert done.wait(5), "another thread could not write after the rollback"
    with eng.connect() as c:  # a read-only connection never takes the gate
        c.exec_driver_sql("SELECT 1").scalar_one()
    assert _count(path) == 1
    eng.dispose()


def test_a_thread_nesting_two_writes_is_refused_by_sqlite_not_deadlocked(tmp_path):
    path = tmp_path / "n.sqlite3"
    _setup(path)
    a, b = _engine(path), _engine(path)
    t0 = time.monotonic()
    with a.begin() as c:
        c.exec_driver_sql("UPDATE counter SET n = 1")
        with pytest.raises(sa.exc.OperationalError, match="locked"), b.begin() as d:
            d.exec_driver_sql("UPDATE counter SET n = 2")
    assert time.monotonic() - t0 < 5  # the gate re-enters in the same thread; SQLite decides at once
    assert _count(path) == 1
    a.dispose()
    b.dispose()


def test_one_gate_per_database_file_and_waiting_threads_time_out(tmp_path):
    path = tmp_path / "t.sqlite3"
    assert write_gate(str(path)) is write_gate(str(tmp_path / "." / "t.sqlite3"))
    gate = write_gate(str(path))
    gate.acquire()
    try:
        gate.timeout, saved = 0.3, gate.timeout
        box: list[BaseException] = []

        def other() -> None:
            try:
                gate.acquire()
            except sa.exc.OperationalError as exc:
                box.append(exc)

        t = threading.Thread(target=other)
        t.start()
        t.join(5)
        assert box and "not acquired within 0.3 s" in str(box[0])
    finally:
        gate.timeout = saved
        gate.release()


def _write_lock_free(path) -> bool:
    """Whether another connection (no gate, no busy wait) can take SQLite's write lock right now."""
    import sqlite3

    raw = sqlite3.connect(str(path), timeout=0, isolation_level=None)
    try:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        if "locked" not in str(exc):
            raise
        return False
    finally:
        raw.close()


def _gate_free(path) -> bool:
    """Whether another thread can take the gate within 0.2 s."""
    gate = write_gate(str(path))
    box: list[bool] = []

    def other() -> None:
        gate.timeout, saved = 0.2, gate.timeout
        try:
            gate.acquire()
        except sa.exc.OperationalError:
            box.append(False)
        else:
            gate.release()
            box.append(True)
        finally:
            gate.timeout = saved

    t = threading.Thread(target=other)
    t.start()
    t.join(5)
    return box[0]


def test_the_write_lock_and_the_gate_are_taken_by_the_first_statement(tmp_path):
    path = tmp_path / "f.sqlite3"
    _setup(path)
    eng = _engine(path)
    with eng.begin() as c:  # nothing sent yet: the statement is still being built
        dbc = c.connection.dbapi_connection
        assert not dbc.in_transaction
        assert _write_lock_free(path) and _gate_free(path)
        n = c.exec_driver_sql("SELECT n FROM counter WHERE id = 1").scalar_one()  # a read first: BEGIN IMMEDIATE
        assert dbc.in_transaction
        assert not _write_lock_free(path) and not _gate_free(path)  # held from the read on: no lost update
        c.exec_driver_sql("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))
    assert _write_lock_free(path) and _gate_free(path)
    assert _count(path) == 1
    eng.dispose()


def test_a_savepoint_first_runs_inside_the_write_transaction(tmp_path):
    path = tmp_path / "s.sqlite3"
    _setup(path)
    eng = _engine(path)
    with eng.begin() as c:
        sp = c.begin_nested()  # SAVEPOINT as the first statement: BEGIN IMMEDIATE goes before it
        assert not _write_lock_free(path)
        c.exec_driver_sql("UPDATE counter SET n = 7 WHERE id = 1")
        sp.rollback()
        with c.begin_nested():
            c.exec_driver_sql("UPDATE counter SET n = n + 2 WHERE id = 1")
    assert _count(path) == 2
    assert _write_lock_free(path) and _gate_free(path)
    eng.dispose()


def test_a_read_unit_of_work_neither_takes_nor_waits_for_the_write_lock(tmp_path):
    path = tmp_path / "w.sqlite3"
    _setup(path)
    eng = _engine(path)
    writer = _engine(path)
    with writer.begin() as w:
        w.exec_driver_sql("UPDATE counter SET n = 5 WHERE id = 1")  # holds the gate and the write lock
        box: list[int] = []

        def read() -> None:
            with eng.connect().execution_options(mhp_read=True) as c, c.begin():
                box.append(c.exec_driver_sql("SELECT n FROM counter WHERE id = 1").scalar_one())

        t = threading.Thread(target=read)  # another thread: the gate would not re-enter for it
        t.start()
        t.join(5)
        assert box == [0]  # the snapshot before the uncommitted write, at once
    eng.dispose()
    writer.dispose()


def test_a_begin_that_met_the_lock_is_sent_again_by_the_next_statement(tmp_path):
    import sqlite3

    path = tmp_path / "b.sqlite3"
    _setup(path)
    eng = _engine(path)
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # outside the gate (the sqlite3 shell, say)
    with eng.begin() as c:
        with pytest.raises(sa.exc.OperationalError, match="locked"):
            c.exec_driver_sql("SELECT n FROM counter WHERE id = 1")
        assert _gate_free(path)  # released with the failed BEGIN
        other.execute("ROLLBACK")
        n = c.exec_driver_sql("SELECT n FROM counter WHERE id = 1").scalar_one()
        assert c.connection.dbapi_connection.in_transaction  # the retry runs in BEGIN IMMEDIATE, not autocommit
        assert not _write_lock_free(path)
        c.exec_driver_sql("UPDATE counter SET n = ? WHERE id = 1", (n + 3,))
    other.close()
    assert _count(path) == 3
    eng.dispose()


def test_units_of_work_read_in_a_plain_begin_and_write_in_begin_immediate(tmp_path):
    from mh_platform.db.engine import make_sessionmaker
    from mh_platform.services.context import UnitOfWork

    path = tmp_path / "u.sqlite3"
    _setup(path)
    eng = _engine(path)
    sessions = make_sessionmaker(eng)
    with UnitOfWork(sessions, read_only=True) as uow:
        assert uow.session.execute(sa.text("SELECT n FROM counter")).scalar_one() == 0
        assert uow.session.connection().connection.dbapi_connection.in_transaction  # a snapshot ...
        assert _write_lock_free(path) and _gate_free(path)  # ... without the write lock
        assert uow.session.execute(sa.text("SELECT n FROM counter")).scalar_one() == 0
    with UnitOfWork(sessions) as uow:
        uow.session.execute(sa.text("SELECT n FROM counter")).scalar_one()
        assert not _write_lock_free(path) and not _gate_free(path)
        uow.session.execute(sa.text("UPDATE counter SET n = 4"))
        uow.commit()
    assert _write_lock_free(path) and _gate_free(path)
    assert _count(path) == 4
    eng.dispose()


def test_the_engine_has_no_connection_event_listeners(tmp_path):
    """The BEGIN is armed by the dialect's do_begin, not a ``begin`` event: an engine with Connection
    event listeners makes SQLAlchemy dispatch events around every statement, commit and rollback."""
    eng = make_engine(f"sqlite:///{tmp_path / 'e.sqlite3'}")
    assert not eng._has_events
    eng.dispose()


def test_raw_driver_writes_first_in_a_transaction_run_inside_it(tmp_path):
    """db.bulk.BulkInsert writes through the raw driver: the BEGIN that waits for SQLAlchemy's first
    statement must be sent before, or its rows would be committed one by one and survive a rollback."""
    from mh_platform.db.bulk import BulkInsert
    from mh_platform.db.engine import make_sessionmaker

    path = tmp_path / "k.sqlite3"
    _setup(path)
    eng = _engine(path)
    table = sa.Table("counter", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("n", sa.Integer))
    with make_sessionmaker(eng)() as s:
        BulkInsert(s, table, ["id", "n"]).write([(2, 20), (3, 30)])  # the transaction's first write
        assert s.connection().connection.dbapi_connection.in_transaction
        assert not _write_lock_free(path)
        s.rollback()
    with make_sessionmaker(eng)() as s:
        assert s.execute(sa.text("SELECT count(*) FROM counter")).scalar_one() == 1
        BulkInsert(s, table, ["id", "n"]).write([(2, 20)])
        s.commit()
    assert _write_lock_free(path) and _gate_free(path)
    with eng.connect() as c:
        assert c.exec_driver_sql("SELECT count(*) FROM counter").scalar_one() == 2
    eng.dispose()
