"""The WSGI app the screening benchmark serves with gunicorn: the real application plus one
minimal single-row insert endpoint on the same database (the baseline), same Flask stack and
headers, no CSRF/cookies/validation/encryption (that is what makes it the floor)."""

from __future__ import annotations

import os

from flask import jsonify, request

from mh_platform.web.app import create_app
from mh_platform.web.authz import public

app = create_app()
_ctx = app.extensions["mhp"]
from bench.bench_screening import BENCH_ANSWER  # noqa: E402


@public
def insert_one():  # noqa: ANN201
    data = request.get_json(silent=True) or {}
    items = [int(v) for v in data.get("items", [])][:20]
    row = {"student_id": int(data.get("student_id", 0)), "instrument": str(data.get("instrument", ""))[:16],
           "score": sum(items), **{f"i{n + 1}": v for n, v in enumerate(items)}}
    with _ctx.engine.begin() as conn:
        conn.execute(BENCH_ANSWER.insert().values(**row))
    return jsonify({"saved": True})


app.add_url_rule("/api/bench/insert", "bench_insert", insert_one, methods=["POST"])


# --------------------------------------------------------------------------- experiments
# MHP_BENCH_EXPERIMENTS (comma-separated; SQLite only; measured by bench_mixed against the unchanged
# app, never on by default) tries deployment/engine changes proposed in the capacity report:
#   deferred_get  GET requests open their transactions with plain BEGIN (WAL readers never wait for
#                 the writer) instead of BEGIN IMMEDIATE.
#   flock         writers queue on an exclusive flock() of <db>.writer-lock before BEGIN IMMEDIATE, so
#                 the next writer is woken as soon as the lock is free instead of polling in SQLite's
#                 busy handler (which sleeps 1, 2, 5, ... up to 100 ms between tries).


def _experiments(engine, names: set[str]) -> None:  # noqa: ANN001
    import fcntl
    import os

    from flask import has_request_context
    from flask import request as req
    from sqlalchemy import event

    lock_fd = os.open(str(engine.url.database) + ".writer-lock", os.O_RDWR | os.O_CREAT, 0o600)
    held = [0]

    def writes() -> bool:
        return not ("deferred_get" in names and has_request_context() and req.method == "GET")

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn, record, proxy) -> None:  # noqa: ANN001, ARG001
        w = writes()
        record.info["write"] = w
        record.info["flock"] = False
        if w and "flock" in names:
            if held[0] == 0:
                fcntl.flock(lock_fd, fcntl.LOCK_EX)
            held[0] += 1
            record.info["flock"] = True

    @event.listens_for(engine, "checkin")
    def _checkin(dbapi_conn, record) -> None:  # noqa: ANN001, ARG001
        if record.info.pop("flock", False):
            held[0] -= 1
            if held[0] == 0:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)


_names = {n for n in os.environ.get("MHP_BENCH_EXPERIMENTS", "").split(",") if n}
if _names and _ctx.engine.dialect.name == "sqlite":
    _experiments(_ctx.engine, _names)
