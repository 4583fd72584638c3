"""The minimal single-row insert endpoint of the reference (performance.md §2a): a bare Flask app,
one JSON POST route that sums 20 items and inserts one row through SQLAlchemy Core in its own
transaction — none of the product's middleware (sessions, CSRF, rate limits, security headers).
Served by gunicorn with the same worker settings as the product for the answer-save benchmark.

The engine: ``MHP_BENCH_BARE_ENGINE=product`` (the default) is the product's ``make_engine`` (on
SQLite: WAL, NORMAL, foreign keys, BEGIN IMMEDIATE with the write gate); ``plain`` is what the
reference measured: ``sqlalchemy.create_engine`` with its defaults (pysqlite's deferred implicit
BEGIN; PostgreSQL through psycopg 3 with the default pool) and, on SQLite, only WAL,
``synchronous=NORMAL`` and a 30 s busy timeout."""

from __future__ import annotations

import os

import sqlalchemy as sa
from flask import Flask, jsonify, request

from bench.bench_screening import BENCH_ANSWER
from mh_platform.db.engine import make_engine, normalise_url


def plain_engine(url: str) -> sa.Engine:
    """The reference's engine (performance.md §2a): no gate, no explicit BEGIN, no foreign keys."""
    url = normalise_url(url)
    eng = sa.create_engine(url)
    if url.startswith("sqlite"):

        @sa.event.listens_for(eng, "connect")
        def _pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return eng


app = Flask(__name__)
ENGINE_KIND = os.environ.get("MHP_BENCH_BARE_ENGINE", "product")
if ENGINE_KIND not in ("product", "plain"):
    raise SystemExit(f"MHP_BENCH_BARE_ENGINE must be product or plain, not {ENGINE_KIND!r}")
_engine = (plain_engine if ENGINE_KIND == "plain" else make_engine)(os.environ["MHP_DATABASE_URL"])


@app.post("/api/bench/insert")
def insert_one():  # noqa: ANN201
    data = request.get_json(silent=True) or {}
    items = [int(v) for v in data.get("items", [])][:20]
    row = {"student_id": int(data.get("student_id", 0)), "instrument": str(data.get("instrument", ""))[:16],
           "score": sum(items), **{f"i{n + 1}": v for n, v in enumerate(items)}}
    with _engine.begin() as conn:
        conn.execute(sa.insert(BENCH_ANSWER).values(**row))
    return jsonify({"saved": True})


@app.get("/s/")
def ready():  # noqa: ANN201 - the start-up probe of bench_screening._serve
    return "ok"
