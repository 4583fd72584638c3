"""The WSGI app the screening benchmark serves with gunicorn: the real application plus one
minimal single-row insert endpoint on the same database (the baseline), same Flask stack and
headers, no CSRF/cookies/validation/encryption (that is what makes it the floor)."""

from __future__ import annotations

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
