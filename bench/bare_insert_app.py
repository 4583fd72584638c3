"""The minimal single-row insert endpoint of the reference (performance.md §2a): a bare Flask app,
one JSON POST route that sums 20 items and inserts one row through SQLAlchemy Core in its own
transaction — none of the product's middleware (sessions, CSRF, rate limits, security headers).
Served by gunicorn with the same worker settings as the product for the answer-save benchmark."""

from __future__ import annotations

import os

import sqlalchemy as sa
from flask import Flask, jsonify, request

from bench.bench_screening import BENCH_ANSWER
from mh_platform.db.engine import make_engine

app = Flask(__name__)
_engine = make_engine(os.environ["MHP_DATABASE_URL"])  # the product's engine settings (WAL, NORMAL, pool)


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
