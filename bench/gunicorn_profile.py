"""gunicorn config for the mixed-traffic profile round (bench/bench_mixed.py, MHP_BENCH_MIXED_PROFILE=1).

In every worker, once the app is loaded (imports are not profiled):
* cProfile from then until exit, dumped to $MHP_BENCH_PROFILE_DIR/prof-<pid>.pstats. The clock is
  wall time (lock waits show) unless MHP_BENCH_PROFILE_CLOCK=cpu (process CPU time) or off (no
  cProfile: the access log and the transaction timing only, at full speed). Only the thread
  that serves requests in a sync worker is profiled.
* per transaction, from engine events: how long the BEGIN statement took (waiting for the database
  lock: SQLite's BEGIN IMMEDIATE) and from then until commit/rollback (holding it),
  by request method and path, dumped to $MHP_BENCH_PROFILE_DIR/tx-<pid>.json.
* unless MHP_BENCH_PROFILE_PHASES=0: inclusive wall and CPU time of the service calls (responses.*,
  keyring, audit, commit, templates) by request kind, dumped to phases-<pid>.json.
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


_phases: dict = {}
_kind = ["-"]


def _add(phase: str, wall: float, cpu: float) -> None:
    row = _phases.setdefault(_kind[0], {}).setdefault(phase, [0, 0.0, 0.0])
    row[0] += 1
    row[1] += wall
    row[2] += cpu


def _timed(phase: str, fn):  # noqa: ANN001, ANN202
    import functools

    @functools.wraps(fn)
    def wrapper(*a, **kw):  # noqa: ANN002, ANN003, ANN202
        w0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*a, **kw)
        finally:
            _add(phase, time.perf_counter() - w0, time.thread_time() - c0)

    return wrapper


def _phase_timers(app, ctx) -> None:  # noqa: ANN001
    """Inclusive wall and CPU (thread) time of the service calls a student request makes, by kind."""
    from bench.bench_mixed import request_kind
    from mh_platform.services import audit, codes, context, responses
    from mh_platform.web.blueprints import student

    inner = app.wsgi_app

    def wsgi(environ, start_response):  # noqa: ANN001, ANN202
        _kind[0] = request_kind(environ.get("REQUEST_METHOD", ""), environ.get("PATH_INFO", ""))
        return _timed("request (Flask app, whole)", inner)(environ, start_response)

    app.wsgi_app = wsgi
    for name in ("begin", "load", "page", "save_answer", "submit"):
        setattr(responses, name, _timed(f"responses.{name}", getattr(responses, name)))
    for name in ("_state", "_merge_page", "flag_path", "score", "load_instrument", "quality_checks"):
        setattr(responses, name, _timed(f"  responses.{name}", getattr(responses, name)))
    audit.record = _timed("  audit.record", audit.record)
    codes.hash_code = _timed("  codes.hash_code", codes.hash_code)
    for name in ("seal", "open_field", "student_key"):
        setattr(ctx.keyring, name, _timed(f"  keyring.{name}", getattr(ctx.keyring, name)))
    context.UnitOfWork.commit = _timed("  UnitOfWork.commit (+after-commit)", context.UnitOfWork.commit)
    student.render_template = _timed("render_template", student.render_template)


def post_worker_init(worker):  # noqa: ANN001, ANN201 - gunicorn hook signature
    global _prof
    app = worker.wsgi
    ctx = app.extensions["mhp"]
    _hooks(ctx.engine)
    if os.environ.get("MHP_BENCH_PROFILE_PHASES", "1") == "1":
        _phase_timers(app, ctx)
    mode = os.environ.get("MHP_BENCH_PROFILE_CLOCK", "wall")
    if mode == "off":  # request and transaction timing only
        return
    _prof = cProfile.Profile(time.process_time if mode == "cpu" else time.perf_counter)
    _prof.enable()


def worker_exit(server, worker):  # noqa: ANN001, ANN201, ARG001
    out = os.environ["MHP_BENCH_PROFILE_DIR"]
    if _prof is not None:
        _prof.disable()
        _prof.dump_stats(os.path.join(out, f"prof-{os.getpid()}.pstats"))
    with open(os.path.join(out, f"tx-{os.getpid()}.json"), "w") as f:
        json.dump(_tx, f)
    with open(os.path.join(out, f"phases-{os.getpid()}.json"), "w") as f:
        json.dump(_phases, f)
