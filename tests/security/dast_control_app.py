"""T14 planted-defect controls: a throwaway Flask app with exactly two deliberate defects, for
``tests/security/test_dast_controls.py`` to show that ``scripts/dast.py`` (the same code path as the
real scan) can fail.

* ``GET /api/v1/items?id=…`` puts ``id`` into SQLite SQL with an f-string (SQL injection), and is
  described by ``/api/v1/openapi.json`` the way the real app describes its operations;
* ``GET /hello?name=…`` writes ``name`` into HTML unescaped (reflected XSS), linked from ``/`` so a
  crawler finds it; it needs the same kind of session cookie the real pages need.

Test-only: nothing imports it outside the control test.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from flask import Flask, jsonify, request

COOKIE = "control_session"
TOKEN = "control-token"  # noqa: S105 - a made-up bearer token of the throwaway app


def make_app(db_path: str) -> Flask:
    with sqlite3.connect(db_path) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT OR REPLACE INTO items VALUES (?, ?)", [(1, "apple"), (2, "pear"), (3, "plum")])

    app = Flask(__name__)

    @app.get("/")
    def index() -> Any:
        return ('<html><body><a href="/hello?name=visitor">hello</a> '
                '<a href="/api/v1/items?id=1">item</a></body></html>')

    @app.get("/hello")
    def hello() -> Any:
        if request.cookies.get(COOKIE) != "ok":
            return "sign in first", 401
        name = request.args.get("name", "")
        return f"<html><body><p>Hello {name}</p></body></html>"  # planted defect: reflected XSS

    @app.get("/api/v1/items")
    def items() -> Any:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return jsonify(error="unauthorized"), 401
        item_id = request.args.get("id", "1")
        with sqlite3.connect(db_path) as conn:
            try:  # planted defect: SQL built with an f-string
                rows = conn.execute(f"SELECT id, name FROM items WHERE id = {item_id}").fetchall()  # noqa: S608  # nosec B608 - the planted defect
            except sqlite3.Error:
                return jsonify(error="bad request"), 400
        return jsonify(items=[{"id": r[0], "name": r[1]} for r in rows])

    @app.get("/api/v1/openapi.json")
    def openapi() -> Any:
        return jsonify({
            "openapi": "3.0.3", "info": {"title": "control", "version": "1"}, "servers": [{"url": "/"}],
            "components": {"securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer"}}},
            "paths": {"/api/v1/items": {"get": {
                "operationId": "items.get", "security": [{"bearerAuth": []}],
                "parameters": [{"in": "query", "name": "id", "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "OK"}}}}},
        })

    return app
