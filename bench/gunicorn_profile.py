"""gunicorn config for the mixed-traffic profile round (bench/bench_mixed.py, MHP_BENCH_MIXED_PROFILE=1).

In every worker, once the app is loaded (imports are not profiled):
* cProfile from then until exit, dumped to $MHP_BENCH_PROFILE_DIR/prof-<pid>.pstats. The clock is
  wall time (lock waits show) unless MHP_BENCH_PROFILE_CLOCK=cpu (process CPU time). Only the thread
  that serves requests in a sync worker is profiled.
* per transaction, from engine events: how long the BEGIN statement took (waiting for the database
  lock: SQLite's BEGIN IMMEDIATE) and from then until commit/rollback (holding it),
  by request method and path, dumped to $MHP_BENCH_PROFILE_DIR/tx-<pid>.json.
"""

import cProfile
import json
import os
import time

_prof = None
_tx: dict = {}
_open: dict = {}


def _key() -> str:
    from flask import has_request_context, request

    if not has_request_context():
        return "-"
    path = request.path
    if path.startswith("/s/p/"):
        path = "/s/p/*"
    return f"{request.method} {path}"


def _hooks(engine) -> None:  # noqa: ANN001
    from sqlalchemy import event

    def before_cursor(conn, cursor, statement, *args) -> None:  # noqa: ANN001, ARG001
        if statement.startswith("BEGIN"):  # SQLite: BEGIN IMMEDIATE waits here for the write lock
            _open[id(conn)] = [time.perf_counter(), None]

    def after_cursor(conn, cursor, statement, *args) -> None:  # noqa: ANN001, ARG001
        st = _open.get(id(conn))
        if statement.startswith("BEGIN") and st is not None:
            st[1] = time.perf_counter()

    def on_begin(conn) -> None:  # noqa: ANN001 - PostgreSQL: no BEGIN statement, nothing to wait for
        if conn.engine.dialect.name != "sqlite":
            now = time.perf_counter()
            _open[id(conn)] = [now, now]

    def end(conn) -> None:  # noqa: ANN001
        st = _open.pop(id(conn), None)
        if st is None or st[1] is None:
            return
        now = time.perf_counter()
        row = _tx.setdefault(_key(), {"n": 0, "wait_s": 0.0, "hold_s": 0.0, "hold_max_s": 0.0})
        row["n"] += 1
        row["wait_s"] += st[1] - st[0]
        row["hold_s"] += now - st[1]
        row["hold_max_s"] = max(row["hold_max_s"], now - st[1])

    event.listen(engine, "before_cursor_execute", before_cursor)
    event.listen(engine, "after_cursor_execute", after_cursor)
    event.listen(engine, "begin", on_begin)
    event.listen(engine, "commit", end)
    event.listen(engine, "rollback", end)


def post_worker_init(worker):  # noqa: ANN001, ANN201 - gunicorn hook signature
    global _prof
    app = worker.wsgi
    ctx = app.extensions["mhp"]
    _hooks(ctx.engine)
    clock = time.process_time if os.environ.get("MHP_BENCH_PROFILE_CLOCK") == "cpu" else time.perf_counter
    _prof = cProfile.Profile(clock)
    _prof.enable()


def worker_exit(server, worker):  # noqa: ANN001, ANN201, ARG001
    out = os.environ["MHP_BENCH_PROFILE_DIR"]
    if _prof is not None:
        _prof.disable()
        _prof.dump_stats(os.path.join(out, f"prof-{os.getpid()}.pstats"))
    with open(os.path.join(out, f"tx-{os.getpid()}.json"), "w") as f:
        json.dump(_tx, f)
