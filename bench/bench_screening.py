"""Screening benchmarks (issue 4), each against a baseline measured in the same run, on SQLite and
on PostgreSQL (when MHP_BENCH_PG_URL names a server database the bench may create and drop):

1. answer-save path (signed student cookie, CSRF, code/window/consent check, validation, row lock,
   decrypt-modify-encrypt of the answers, critical-item check via the engine, commit) vs a minimal
   single-row insert endpoint on the same database (``bench/bare_insert_app.py``); gunicorn 4 sync
   workers, 32 connections from wrk in its own process on 127.0.0.1 (``bench/save.lua``; the
   reference's method — a Python load generator saturates the 2-core box before the server does).
   Targets: throughput ratio >= 0.5, p99 <= 3x, no errors. Two baselines in the same run: the minimal
   endpoint on the product's engine (``answer_save_throughput``) and on a plain
   ``sqlalchemy.create_engine`` as in the reference (``answer_save_throughput_vs_plain_engine``, the
   stricter one when the product's engine costs more than the plain one).
2. zero lost answers: 500 students at once each autosave a full PHQ-9; every acknowledged answer
   must be in the database (decrypted), nothing else.
3. paper import of ~1,000,000 item answers (scoring and encryption included) vs the raw driver's bulk
   insert of the same answer rows (sqlite3 executemany / psycopg COPY). Target <= 3x. The answers
   raise no flag (the flag path idle), as the G3 goal's "same rows" suggests.
4. the same import at 200,000 answers with one student in 7 in a PHQ-9 concern band (real screens
   flag 10-20 %), so about 14 % of students go through the flag path: what an import of real answers
   costs against the same baseline. Same target, for context.
Bounded: about 2-4 minutes per database.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing as mp
import os
import pathlib
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import sqlalchemy as sa

from bench.common import absolute, create_pg_database, drop_pg_database, result, seed_open_campaign

META = sa.MetaData()
BENCH_ANSWER = sa.Table(  # the baseline endpoint's table (bench/screening_app.py)
    "bench_answer", META,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("student_id", sa.Integer),
    sa.Column("instrument", sa.String(16)),
    *[sa.Column(f"i{n}", sa.SmallInteger) for n in range(1, 21)],
    sa.Column("score", sa.Integer),
)

ROOT = pathlib.Path(__file__).resolve().parents[1]
PY = sys.executable
CONNECTIONS = 32
DURATION = float(os.environ.get("MHP_BENCH_SECONDS", "8"))
PAPER_ANSWERS = int(os.environ.get("MHP_BENCH_PAPER_ANSWERS", "1000000"))
PAPER_FLAG_ANSWERS = int(os.environ.get("MHP_BENCH_PAPER_FLAG_ANSWERS", "200000"))
PAPER_ROUNDS = int(os.environ.get("MHP_BENCH_PAPER_ROUNDS", "3"))  # each on a fresh copy of the seeded database
CONCERN_EVERY = int(os.environ.get("MHP_BENCH_PAPER_CONCERN_EVERY", "7"))  # ~14 % of students: real screens flag 10-20 %
BATTERY = ("phq9", "gad7", "asq", "k10", "who5")


# --------------------------------------------------------------------------- set-up


def _settings(url: str, key: str):
    from mh_platform.config import load_settings

    return load_settings({"env": "test", "database_url": url, "master_key_file": key, "secret_key": "b" * 40,
                          "extra": {"import_max_bytes": 200_000_000, "import_max_rows": 2_000_000,
                                    "student_code_rate_limit": "100000 per minute",
                                    "student_code_global_limit": "100000 per minute"}}, environ={})


def _context(url: str, key: str):
    from mh_platform.services.context import build_context
    from mh_platform.services.keys import bootstrap_keys

    ctx = build_context(_settings(url, key))
    bootstrap_keys(ctx)
    return ctx


def _seed(ctx, n_students: int, *, per_class: int = 50) -> tuple:
    """A school with ``n_students`` in grade 7 (consent granted), a counsellor and an open campaign;
    student numbers G2100<8 digits> (the paper bench's file uses them)."""
    return seed_open_campaign(ctx, n_students, per_class=per_class, prefix="b", number_prefix="G")


# --------------------------------------------------------------------------- HTTP load


class Client:
    """One keep-alive-capable connection with a tiny cookie jar."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        for attempt in range(3):
            try:
                self.conn.request(method, path, body=body, headers=h)
                r = self.conn.getresponse()
                data = r.read()
                break
            except (ConnectionError, http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt == 2:
                    raise
        for k, v in r.getheaders():
            if k.lower() == "set-cookie":
                name, _, rest = v.partition("=")
                val = rest.split(";", 1)[0]
                if val == "" or "Max-Age=0" in v or "expires=Thu, 01 Jan 1970" in v:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = val
        if r.getheader("Connection", "").lower() == "close":
            self.conn.close()
        return r.status, data

    def login(self, code: str) -> str:
        import re

        st, html = self.request("GET", "/s/")
        token = re.search(rb'name="csrf-token" content="([^"]+)"', html).group(1).decode()
        body = f"code={code}&csrf_token={token}".encode()
        st, _ = self.request("POST", "/s/", body, {"Content-Type": "application/x-www-form-urlencoded"})
        if st != 303:
            raise RuntimeError(f"login failed: {st}")
        return token


def _wrk_load(port: int, mode: str, cookies: list[str], seconds: float) -> dict:
    """wrk from its own process (``bench/save.lua``), ``-t C -c C --latency``: ``insert`` (the baseline
    endpoint) or ``save`` (each connection opens the PHQ-9 page of its own entered code once for the
    session cookie and CSRF token, then autosaves). Throughput counts acknowledged requests only
    (200, and ``"saved": true`` for a save)."""
    import shutil

    exe = shutil.which("wrk")
    if exe is None:
        raise RuntimeError("wrk is not installed: run `make bench-deps`")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mhp-wrk-"))
    plan, out = tmp / "plan.txt", tmp / "out.json"
    plan.write_text("\n".join(cookies) + "\n")
    env = dict(os.environ, MHP_WRK_MODE=mode, MHP_WRK_PLAN=str(plan), MHP_WRK_OUT=str(out))
    n = CONNECTIONS
    cmd = [exe, f"-t{n}", f"-c{n}", f"-d{seconds:g}s", "--latency", "-s", str(ROOT / "bench" / "save.lua"),
           f"http://127.0.0.1:{port}"]
    subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120, check=True)
    got = json.loads(out.read_text())
    secs = got["duration_us"] / 1e6
    return {"rps": got["ok"] / secs, "p50": got["p50_us"] / 1000, "p99": got["p99_us"] / 1000, "n": got["ok"],
            "errors": got["errors"] + got["socket_errors"], "requests": got["requests"]}


def _lost_worker(port: int, codes: list[str], out: mp.Queue) -> None:
    acked: dict[str, dict[str, int]] = {}
    bad = [0]
    lock = threading.Lock()

    def run(code: str) -> None:
        c = Client(port)
        try:
            token = c.login(code)
        except Exception:  # noqa: BLE001 - counted as an error
            with lock:
                bad[0] += 1
            return
        rnd = random.Random(code)
        mine: dict[str, int] = {}
        for item in range(1, 11):
            v = rnd.randrange(4) if item < 10 else rnd.randrange(4)
            if item == 9:
                v = 0
            st, data = c.request("POST", "/s/answer", json.dumps({"instrument": "phq9", "item": item, "value": v}).encode(),
                                 {"Content-Type": "application/json", "X-CSRFToken": token})
            if st == 200 and json.loads(data).get("saved"):
                mine[str(item)] = v
            else:
                with lock:
                    bad[0] += 1
        with lock:
            acked[code] = mine

    threads = [threading.Thread(target=run, args=(code,)) for code in codes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((acked, bad[0]))


def _serve(url: str, key: str, port: int, gunicorn_args: list[str] | None = None,
           app: str = "bench.screening_app:app", extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = dict(os.environ, **(extra_env or {}), MHP_ENV="test", MHP_DATABASE_URL=url, MHP_MASTER_KEY_FILE=key, MHP_SECRET_KEY="b" * 40,
               MHP_CONFIG_FILE="/nonexistent")
    env.pop("MHP_MASTER_KEY", None)
    # same settings as _settings(): the rate limits are lifted through the instance file
    inst = pathlib.Path(tempfile.mkdtemp()) / "mhp.toml"
    inst.write_text('[extra]\nstudent_code_rate_limit = "100000 per minute"\n'
                    'student_code_global_limit = "100000 per minute"\n')
    env["MHP_CONFIG_FILE"] = str(inst)
    args = gunicorn_args if gunicorn_args is not None else ["-w", "4", "-k", "sync"]
    proc = subprocess.Popen([str(pathlib.Path(PY).with_name("gunicorn")), *args, "-b",
                             f"127.0.0.1:{port}", "--log-level", "warning", app],
                            cwd=ROOT, env=env, start_new_session=True)
    for _ in range(200):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/s/")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("gunicorn did not start")


def _free_port() -> int:
    import socket

    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        return sk.getsockname()[1]


def _http_benches(label: str, url: str, key: str) -> list[dict]:
    import sqlalchemy as sa

    from mh_platform.db.models import Response
    from mh_platform.services import campaigns

    ctx = _context(url, key)
    _actor, cid = _seed(ctx, 600)
    META.create_all(ctx.engine)
    codes = list(campaigns.issue_codes_system(ctx, cid).values())
    port = _free_port()
    proc = _serve(url, key, port)
    rows: list[dict] = []
    try:
        from bench.bench_mixed import mint_student_cookie
        from mh_platform.services import responses

        cookies = [mint_student_cookie(responses.begin(ctx, c).sitting) for c in codes[:CONNECTIONS]]
        bare_port, plain_port = _free_port(), _free_port()
        bare_proc = _serve(url, key, bare_port, app="bench.bare_insert_app:app")
        plain_proc = _serve(url, key, plain_port, app="bench.bare_insert_app:app",
                            extra_env={"MHP_BENCH_BARE_ENGINE": "plain"})
        try:
            _wrk_load(bare_port, "insert", [], 2.0)  # warm-up: workers forked, statements prepared
            _wrk_load(plain_port, "insert", [], 2.0)
            _wrk_load(port, "insert", [], 2.0)
            _wrk_load(port, "save", cookies, 2.0)
            base = _wrk_load(bare_port, "insert", [], DURATION)
            plain = _wrk_load(plain_port, "insert", [], DURATION)
            same_app = _wrk_load(port, "insert", [], DURATION)
            save = _wrk_load(port, "save", cookies, DURATION)
        finally:
            for pr in (bare_proc, plain_proc):
                os.killpg(pr.pid, signal.SIGTERM)
                pr.wait(timeout=30)
        rows.append(result(f"screening.answer_save_throughput.{label}", "req/s", save["rps"], base["rps"], 0.5,
                           p50_ms=round(save["p50"], 1), baseline_p50_ms=round(base["p50"], 1),
                           errors=save["errors"], baseline_errors=base["errors"], connections=CONNECTIONS))
        rows[-1]["passed"] = rows[-1]["passed"] and save["errors"] == 0 and base["errors"] == 0
        rows[-1].update(baseline_kind="bare Flask + SQLAlchemy Core insert endpoint (bench/bare_insert_app.py)",
                        same_app_insert_rps=round(same_app["rps"], 1),
                        ratio_vs_same_app_insert=round(save["rps"] / same_app["rps"], 4) if same_app["rps"] else None,
                        same_app_insert_p99_ms=round(same_app["p99"], 1),
                        plain_engine_insert_rps=round(plain["rps"], 1),
                        ratio_vs_plain_engine_insert=round(save["rps"] / plain["rps"], 4) if plain["rps"] else None)
        rows.append(result(f"screening.answer_save_p99.{label}", "ms", save["p99"], base["p99"], 3.0,
                           higher_is_better=False))
        rows.append(result(f"screening.answer_save_throughput_vs_plain_engine.{label}", "req/s", save["rps"],
                           plain["rps"], 0.5, p50_ms=round(save["p50"], 1), baseline_p50_ms=round(plain["p50"], 1),
                           p99_ms=round(save["p99"], 1), baseline_p99_ms=round(plain["p99"], 1),
                           errors=save["errors"], baseline_errors=plain["errors"], connections=CONNECTIONS,
                           baseline_kind="the same bare endpoint on a plain sqlalchemy.create_engine, as in the "
                                         "reference (bench/bare_insert_app.py, MHP_BENCH_BARE_ENGINE=plain)",
                           product_engine_insert_rps=round(base["rps"], 1)))
        rows[-1]["passed"] = rows[-1]["passed"] and save["errors"] == 0 and plain["errors"] == 0
        rows.append(result(f"screening.answer_save_p99_vs_plain_engine.{label}", "ms", save["p99"], plain["p99"],
                           3.0, higher_is_better=False))
        # 500 students at once, a full PHQ-9 each: saved == acknowledged
        students = codes[CONNECTIONS:CONNECTIONS + 500]
        q: mp.Queue = mp.Queue()
        procs = [mp.Process(target=_lost_worker, args=(port, part, q)) for part in (students[:250], students[250:])]
        t0 = time.perf_counter()
        for p in procs:
            p.start()
        got = [q.get() for _ in procs]
        for p in procs:
            p.join()
        secs = time.perf_counter() - t0
        acked = {k: v for g in got for k, v in g[0].items()}
        errors = sum(g[1] for g in got)
        from mh_platform.services import codes as code_service
        lost = extra = 0
        with ctx.uow() as uow:
            s = uow.session
            from mh_platform.db.models import AccessCode

            for code, ans in acked.items():
                h = code_service.hash_code(ctx, s, code)
                sid = s.scalar(sa.select(AccessCode.student_id).where(AccessCode.code_hash == h))
                r = s.scalar(sa.select(Response).where(Response.campaign_id == cid, Response.student_id == sid,
                                                       Response.instrument_id == "phq9"))
                stored = json.loads(ctx.keyring.open_field(s, r.answers_enc, table="response", column="answers_enc",
                                                           row_id=r.id)) if r is not None else {}
                lost += sum(1 for k, v in ans.items() if stored.get(k) != v)
                extra += sum(1 for k in stored if k not in ans)
        n_acked = sum(len(v) for v in acked.values())
        rows.append(absolute(f"screening.lost_answers_500_students.{label}", "answers", lost + extra, 0,
                             acknowledged=n_acked, students=len(acked), errors=errors, seconds=round(secs, 1)))
        rows[-1]["passed"] = lost + extra == 0 and len(acked) == 500 and n_acked == 5000
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        ctx.engine.dispose()
    return rows


# --------------------------------------------------------------------------- paper import


def _paper_bench(label: str, url: str, key: str, *, answers: int = 0, concern_every: int = 0,
                 name: str = "paper_import_1M_answers") -> list[dict]:
    """The paper import of ``answers`` item answers vs the raw driver's bulk insert of the same answer
    rows. ``concern_every`` = k > 0: every k-th student answers PHQ-9 items 1-8 with "2" (total 16, a
    band with a concern), so that share of students goes through the flag path; 0: a class with no
    concern (the flag path idle — the G3 row). Seeded once; ``PAPER_ROUNDS`` rounds of baseline and
    import, each on a fresh copy of the seeded database; the row is the round with the median ratio."""
    import csv
    import io

    import sqlalchemy as sa

    from mh_platform.core.instruments import load_instrument
    from mh_platform.services import paper_import

    items_per_student = sum(load_instrument(i).n_items for i in BATTERY)
    n_students = max(1, (answers or PAPER_ANSWERS) // items_per_student)
    ctx = _context(url, key)
    actor, cid = _seed(ctx, n_students, per_class=50)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["学籍号", "量表"] + [str(n) for n in range(1, 11)])
    raw_rows = []
    for k in range(n_students):
        num = f"G2100{k:08d}"
        concern = concern_every > 0 and k % concern_every == 0
        for iid in BATTERY:
            inst = load_instrument(iid)
            vals = []
            for j, it in enumerate(inst.items):
                if it.kind == "yes_no":
                    vals.append("否")
                elif concern and iid == "phq9" and j < 8:
                    vals.append("2")
                else:
                    opts = sorted(o.value for o in it.options)
                    vals.append(str(opts[-1] if iid == "who5" else opts[0]))
            w.writerow([num, iid] + vals)
            raw_rows.extend((k, iid, n + 1, 0) for n in range(len(vals)))
    data = buf.getvalue().encode("utf-8")
    n_answers = len(raw_rows)
    with ctx.engine.begin() as c:  # fresh bulk-loaded tables: give the planner statistics, as in production
        c.exec_driver_sql("ANALYZE")
    ctx.engine.dispose()
    # PAPER_ROUNDS rounds, each on a fresh copy of the seeded database: the raw bulk insert, then the
    # import; the row is the round with the median ratio (this box varies by ±10 % run to run)
    rounds: list[dict] = []
    for r in range(PAPER_ROUNDS):
        u = _copy_database(label, url, r)
        rctx = _context(u, key)
        try:
            t_raw = _raw_bulk_insert(rctx.engine, raw_rows)
            t0 = time.perf_counter()
            pv = paper_import.commit(rctx, actor, data, "paper.csv", cid)
            t_imp = time.perf_counter() - t0
            with rctx.uow() as uow:
                from mh_platform.db.models import Response

                n_resp = uow.session.scalar(sa.select(sa.func.count()).select_from(Response)
                                            .where(Response.source == "paper"))
            floor: float | str | None = None
            if r == PAPER_ROUNDS - 1:
                try:
                    floor = round(_response_rows_floor(rctx.engine), 3)
                except Exception as exc:  # noqa: BLE001 - context only: never fail the measured row
                    floor = f"error: {exc!r}"[:200]
            rounds.append({"import": t_imp, "raw": t_raw, "ratio": t_imp / t_raw, "responses": int(n_resp),
                           "flag_checks": pv.flagged, "floor": floor})
        finally:
            rctx.engine.dispose()
            _drop_copy(label, u)
    mid = sorted(rounds, key=lambda x: x["ratio"])[len(rounds) // 2]
    t_floor, t_raw_last = rounds[-1]["floor"], rounds[-1]["raw"]
    return [result(f"screening.{name}.{label}", "s", mid["import"], mid["raw"], 3.0, higher_is_better=False,
                   answers=n_answers, responses=mid["responses"], students=n_students, flag_checks=mid["flag_checks"],
                   concern_students=len(range(0, n_students, concern_every)) if concern_every else 0,
                   baseline_kind="sqlite3 executemany" if label == "sqlite" else "psycopg COPY",
                   rounds=[{k: round(v, 3) for k, v in x.items() if k in ("import", "raw", "ratio")} for x in rounds],
                   response_rows_floor_s=t_floor,
                   response_rows_floor_ratio=round(t_floor / t_raw_last, 2) if isinstance(t_floor, float) else None)]


def _raw_bulk_insert(eng, raw_rows: list[tuple]) -> float:
    """The baseline: the raw driver's bulk insert of the answer rows, one transaction (seconds)."""
    with eng.begin() as c:
        c.exec_driver_sql("CREATE TABLE bench_answer_rows (id INTEGER PRIMARY KEY, student_id INTEGER, "
                          "instrument VARCHAR(16), item SMALLINT, value SMALLINT)" if eng.dialect.name == "sqlite" else
                          "CREATE TABLE bench_answer_rows (id BIGSERIAL PRIMARY KEY, student_id INTEGER, "
                          "instrument VARCHAR(16), item SMALLINT, value SMALLINT)")
    raw = eng.raw_connection()
    try:
        t0 = time.perf_counter()
        cur = raw.cursor()
        if eng.dialect.name == "sqlite":
            cur.execute("BEGIN")  # the engine's connections leave transactions to the caller
            cur.executemany("INSERT INTO bench_answer_rows (student_id, instrument, item, value) VALUES (?, ?, ?, ?)",
                            raw_rows)
        else:
            with cur.copy("COPY bench_answer_rows (student_id, instrument, item, value) FROM STDIN") as cp:
                for r in raw_rows:
                    cp.write_row(r)
        raw.commit()
        return time.perf_counter() - t0
    finally:
        raw.close()


def _copy_database(label: str, url: str, n: int) -> str:
    """A copy of the seeded database for one round: the SQLite file after a checkpoint, or a
    PostgreSQL database made from it as a template (then a CHECKPOINT, so the copy's writes are not
    flushed during the round)."""
    import shutil

    import sqlalchemy as sa

    if label == "sqlite":
        src = url.removeprefix("sqlite:///")
        eng = sa.create_engine(url)
        with eng.connect() as c:
            c.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        eng.dispose()
        dst = f"{src}.round{n}"
        shutil.copyfile(src, dst)
        return f"sqlite:///{dst}"
    name = url.rsplit("/", 1)[1]
    return create_pg_database(url, f"{name}_r{n}", template=name)


def _drop_copy(label: str, url: str) -> None:
    if label == "sqlite":
        p = pathlib.Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            pathlib.Path(str(p) + suffix).unlink(missing_ok=True)
        return
    _drop(label, url)


def _response_rows_floor(eng) -> float:
    """Context for the ratio (not part of it): the raw driver's bulk insert (executemany / COPY, one
    transaction) of the import's own response rows, as stored, into an empty copy of the response
    table with the same indexes and foreign keys — what writing these rows costs the database
    before any parsing, scoring or encryption. The copy is dropped afterwards."""
    raw = eng.raw_connection()
    try:
        cur = raw.cursor()
        if eng.dialect.name == "sqlite":
            ddl = [sql.replace("response", "floor_response") for (sql,) in cur.execute(
                "SELECT sql FROM sqlite_master WHERE tbl_name = 'response' AND sql IS NOT NULL ORDER BY type DESC")]
            rows = cur.execute("SELECT * FROM response WHERE source = 'paper' ORDER BY id").fetchall()
            for sql in ddl:
                cur.execute(sql)
            marks = ", ".join("?" for _ in rows[0])
            t0 = time.perf_counter()
            cur.execute("BEGIN")
            cur.executemany(f"INSERT INTO floor_response VALUES ({marks})", rows)  # noqa: S608 - fixed names  # nosec B608
            cur.execute("COMMIT")
            t = time.perf_counter() - t0
            cur.execute("DROP TABLE floor_response")
            return t
        cur.execute("CREATE TABLE floor_response (LIKE response INCLUDING ALL)")
        for (fk,) in cur.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                 "WHERE conrelid = 'response'::regclass AND contype = 'f'").fetchall():
            cur.execute(f"ALTER TABLE floor_response ADD {fk}")
        cols = [c for (c,) in cur.execute("SELECT column_name FROM information_schema.columns WHERE table_name = "
                                          "'response' ORDER BY ordinal_position").fetchall()]
        rows = cur.execute(f"SELECT {', '.join(c + '::text' for c in cols)} FROM response "  # noqa: S608 - column names read from information_schema  # nosec B608
                           "WHERE source = 'paper' ORDER BY id").fetchall()
        raw.commit()
        t0 = time.perf_counter()
        with cur.copy(f"COPY floor_response ({', '.join(cols)}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
        raw.commit()
        t = time.perf_counter() - t0
        cur.execute("DROP TABLE floor_response")
        raw.commit()
        return t
    finally:
        raw.close()


# --------------------------------------------------------------------------- entry


def _databases() -> list[tuple[str, str, object]]:
    dbs: list[tuple[str, str, object]] = []
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mhp-bench-screening-"))
    dbs.append(("sqlite", f"sqlite:///{tmp}/bench.sqlite3", None))
    pg = os.environ.get("MHP_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    if pg:
        dbs.append(("postgresql", pg, None))
    return dbs


def _fresh(label: str, url: str) -> str:
    from mh_platform.db import migrate

    if label == "sqlite":
        p = pathlib.Path(url.removeprefix("sqlite:///"))
        for suffix in ("", "-wal", "-shm"):
            pathlib.Path(str(p) + suffix).unlink(missing_ok=True)
        migrate.upgrade(url)
        return url
    new = create_pg_database(url, "mhp_bench_scr")
    migrate.upgrade(new)
    return new


def _drop(label: str, url: str) -> None:
    if label == "postgresql":
        drop_pg_database(url)


def run() -> list[dict]:
    from mh_platform.services.keys import write_new_master_key_file

    key = str(pathlib.Path(tempfile.mkdtemp()) / "master.key")
    write_new_master_key_file(key)
    rows: list[dict] = []
    only = os.environ.get("MHP_BENCH_SCREENING_PARTS", "http,paper,paper_flags").split(",")
    for label, url, _ in _databases():
        if "http" in only:
            u = _fresh(label, url)
            try:
                rows += _http_benches(label, u, key)
            except Exception as exc:  # noqa: BLE001 - report, go on with the other database
                rows.append({"name": f"screening.http.{label}", "unit": "error", "value": 0, "baseline": 0,
                             "ratio": 0, "target": 0, "passed": False, "error": repr(exc)[:300]})
            finally:
                _drop(label, u)
        if "paper" in only:
            u = _fresh(label, url)
            try:
                rows += _paper_bench(label, u, key)
            except Exception as exc:  # noqa: BLE001
                rows.append({"name": f"screening.paper.{label}", "unit": "error", "value": 0, "baseline": 0,
                             "ratio": 0, "target": 0, "passed": False, "error": repr(exc)[:300]})
            finally:
                _drop(label, u)
        if "paper_flags" in only:  # the same import with one student in CONCERN_EVERY in a concern band
            u = _fresh(label, url)
            try:
                rows += _paper_bench(label, u, key, answers=PAPER_FLAG_ANSWERS, concern_every=CONCERN_EVERY,
                                     name=f"paper_import_{PAPER_FLAG_ANSWERS // 1000}k_answers_with_flags")
            except Exception as exc:  # noqa: BLE001
                rows.append({"name": f"screening.paper_flags.{label}", "unit": "error", "value": 0, "baseline": 0,
                             "ratio": 0, "target": 0, "passed": False, "error": repr(exc)[:300]})
            finally:
                _drop(label, u)
    _ = statistics
    return rows
