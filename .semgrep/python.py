# Positive and negative controls for python.yml: `semgrep --test .semgrep` (make lint runs it).
import subprocess

import flask
import requests
import sqlalchemy as sa
from flask import Markup, render_template_string, request, session
from sqlalchemy import text


def sql(s, cur, conn, x, cols, t):
    # ruleid: mhp-sql-built-string
    s.execute(sa.text(f"SELECT * FROM t WHERE a = {x}"))
    # ruleid: mhp-sql-built-string
    sa.text("SELECT " + x)
    # ruleid: mhp-sql-built-string
    sa.text("SELECT {}".format(x))
    # ruleid: mhp-sql-built-string
    sa.text("SELECT %s" % x)
    q = f"DELETE FROM t WHERE id = {x}"
    # ruleid: mhp-sql-built-string
    text(q)
    # ruleid: mhp-sql-built-string
    conn.exec_driver_sql("DELETE FROM t WHERE id = " + x)
    # ruleid: mhp-sql-built-string
    cur.execute(f"SELECT {x}")
    stmt = ", ".join(cols)
    # ruleid: mhp-sql-built-string
    cur.executemany(stmt, [])
    # ok: mhp-sql-built-string
    s.execute(sa.text("SELECT * FROM t WHERE a = :a"), {"a": x})
    # ok: mhp-sql-built-string
    sa.text("SELECT 1 " + "FROM t")
    # ok: mhp-sql-built-string
    cur.execute("BEGIN" if x else "BEGIN IMMEDIATE")
    suffix = f":{x}"
    # ok: mhp-sql-built-string
    s.execute(sa.select(t.c.a).where(t.c.key.endswith(suffix)))
    # ok: mhp-sql-built-string
    s.execute(sa.select(t).join(t, t.c.a == x))


def templates():
    # ruleid: mhp-render-template-string
    render_template_string("<p>{{ x }}</p>")
    # ruleid: mhp-markup-on-data
    return Markup(request.form["note"])


def printing():
    # ruleid: mhp-print-request-data
    print("answer", request.form.get("a"))
    # ruleid: mhp-print-request-data
    print(session["code"])
    # ok: mhp-print-request-data
    print("strings filled")


def outbound(url):
    # ruleid: mhp-outbound-http
    requests.get("https://cdn.example.com/x.js", timeout=5)
    # ruleid: mhp-shell-true
    subprocess.run(f"pg_dump {url}", shell=True)
    # ok: mhp-shell-true
    subprocess.run(["pg_dump", url], check=True)


def engines(url):
    # ruleid: mhp-engine-hides-parameters
    sa.create_engine(url)
    # ok: mhp-engine-hides-parameters
    sa.create_engine(url, hide_parameters=True, future=True)


def debug(app: flask.Flask):
    # ruleid: mhp-flask-debug
    app.run(debug=True)


def loads(blob):
    import pickle

    # ruleid: mhp-unsafe-deserialisation
    return pickle.loads(blob)
