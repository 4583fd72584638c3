"""Mixed-traffic capacity (issue 4, goal G2): one node sustains >= 3x the modelled city peak.

250,000 students screened in one school week with per-item autosave is ~420 req/s at the peak
(docs: performance reference §1.3), so the target is **1,260 req/s of mixed answer and page traffic,
p99 <= 250 ms, zero errors** on the default deployment (SQLite WAL + synchronous=NORMAL, one node).

Load: wrk (``bench/mixed.lua``) from a second process on 127.0.0.1, ``-t C -c C`` so every wrk thread
owns one connection and plays whole students in turn from its slice of a plan file: GET /s/ (CSRF meta,
session cookie), POST /s/ (code), then per instrument of the grade-7 battery (phq9, gad7, asq, k10,
who5) GET the page, autosave every asked item (POST /s/answer), POST the page form, and finally GET
/s/done — about 49 requests per student, ~73 % of them autosaves. Every student has a fresh code.
Answers are mostly low (no concern); ``CRITICAL_SHARE`` of the students answer one critical item
(PHQ-9 item 9 or ASQ item 1), so the at-once flag path and the help page are exercised. Skip rules
come from the instrument files (PHQ-9/GAD-7 difficulty item, K10 items 3/6, ASQ item 5).

Afterwards the database must agree with what wrk saw: logins, submitted pages, finished codes and
saved answers (deltas of the campaign counters; a request still in flight when wrk stopped may have
committed, at most one per connection), and a sample of finished students is decrypted
(``keyring.open_field``) and compared with the plan answer by answer. Any error, lost request or
mismatch fails the row.

Server: gunicorn 4 sync workers (the reference's best config for database-bound endpoints on
2 vCPUs); ``MHP_BENCH_MIXED_GUNICORN`` overrides the worker arguments, e.g. ``-w 3 -k gthread
--threads 4``. Rows: ``screening.mixed_traffic.<db>`` (req/s, median of the rounds, vs 1,260) and
``screening.mixed_traffic_p99.<db>`` (ms, median of the rounds' p99, vs 250). The target is for the
SQLite node; the PostgreSQL rows (when ``MHP_BENCH_PG_URL`` is not empty) are for information.

The ceiling, measured in the same run: right after each measured round, wrk loads the reference's
minimal single-row insert endpoint (``bench/bare_insert_app.py``, same database, same gunicorn
settings, 32 connections). Row ``screening.mixed_traffic_vs_insert_ceiling.<db>`` is the mixed rate as
a share of it (median of the per-round ratios), against 1,260 / 2,865 = 0.44: the absolute target as a
share of the reference machine's own minimal insert endpoint (performance.md §2a), the portable form
of the goal on a machine slower or faster than the reference. The absolute rows stay as they are.

Knobs (environment): MHP_BENCH_MIXED_SECONDS (15), _ROUNDS (3), _WARMUP (5 s), _CONNECTIONS (32), _CEILING (1),
_DBS (sqlite,postgresql), _GUNICORN, _PROFILE (1: one more round with per-request access-log timing
and cProfile in every worker; the summary goes to bench/mixed_profile.txt).
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.common import absolute, result

HERE = pathlib.Path(__file__).resolve().parent
LUA = HERE / "mixed.lua"
SECRET = "b" * 40  # bench_screening._serve gives the server this secret key
STUDENT_COOKIE_SALT = "mhp-student-session"  # web/blueprints/student.py

TARGET_RPS = 1260.0
TARGET_P99_MS = 250.0
# The reference machine's minimal single-row insert endpoint (performance.md §2a, run A: sqlite-normal,
# gunicorn sync-4, wrk 32 connections): 2,865 req/s. The absolute target as a share of that ceiling is
# the portable form of G2 ("treat the ratios as the portable result", performance.md §4).
REFERENCE_INSERT_RPS = 2865.0
TARGET_RATIO_TO_INSERT = round(TARGET_RPS / REFERENCE_INSERT_RPS, 2)  # 0.44
CRITICAL_SHARE = 0.02  # students answering one critical item (half PHQ-9 item 9, half ASQ item 1)
DEFAULT_GUNICORN = "-w 4 -k sync"
SAMPLE = 100  # finished students decrypted per round
MAX_RPS_PLANNED = 3000.0  # students are seeded for this rate, so no thread runs out
REQUESTS_PER_STUDENT_MIN = 45


def _env(name: str, default: str) -> str:
    return os.environ.get(f"MHP_BENCH_MIXED_{name}", default)


# --------------------------------------------------------------------------- answer plans (pure)

# weights over an instrument's option values: a population with little concern
_WEIGHTS: dict[str, dict[Any, float]] = {
    "phq9": {0: 0.55, 1: 0.30, 2: 0.11, 3: 0.04},
    "gad7": {0: 0.55, 1: 0.30, 2: 0.11, 3: 0.04},
    "k10": {1: 0.50, 2: 0.30, 3: 0.14, 4: 0.05, 5: 0.01},
    "who5": {5: 0.15, 4: 0.35, 3: 0.30, 2: 0.13, 1: 0.05, 0: 0.02},
}
# the critical answer per kind of critical student: (instrument, item, value)
CRITICAL_KINDS: dict[str, tuple[str, int, Any]] = {"phq9_item9": ("phq9", 9, 1), "asq_item1": ("asq", 1, "yes")}


@dataclass(frozen=True)
class Answer:
    item: int
    value: Any
    ms: int
    critical: bool = False


@dataclass(frozen=True)
class Page:
    instrument: str
    answers: tuple[Answer, ...]

    @property
    def critical(self) -> bool:
        return any(a.critical for a in self.answers)

    def as_dict(self) -> dict[str, Any]:
        return {str(a.item): a.value for a in self.answers}


def _pick(rng: random.Random, inst_id: str, item: Any) -> Any:
    """A low-concern answer: the instrument's weights, else its first option (no / lowest)."""
    values = [o.value for o in item.options]
    if item.kind == "yes_no":
        return "no" if "no" in values else values[0]
    w = _WEIGHTS.get(inst_id)
    if w is None:
        return min(values)
    allowed = [v for v in values if v in w]
    return rng.choices(allowed, weights=[w[v] for v in allowed])[0]


def answer_plan(rng: random.Random, battery: Sequence[str], critical: str | None = None) -> list[Page]:
    """The answers one simulated student gives, page by page, in the order asked.

    Items whose skip rule holds on the earlier answers are not asked (as on paper); the critical
    item of ``critical`` (a key of CRITICAL_KINDS) gets its positive answer, every other critical
    item a negative one. Item times are 2.5-9 s (so the quality check does not see "too fast").
    """
    from mh_platform.core.instruments import load_instrument

    crit = CRITICAL_KINDS[critical] if critical else None
    pages = []
    for inst_id in battery:
        inst = load_instrument(inst_id)
        crit_items = {c.item for c in inst.critical_items}
        raw: dict[int, Any] = {}
        answers = []
        for it in inst.items:
            if it.skip is not None and it.skip.when.holds(raw):
                continue
            is_crit = crit is not None and crit[0] == inst_id and crit[1] == it.number
            if is_crit:
                v = crit[2]
            elif it.number in crit_items:
                v = "no" if it.kind == "yes_no" else min(o.value for o in it.options)
            else:
                v = _pick(rng, inst_id, it)
            raw[it.number] = v
            answers.append(Answer(it.number, v, rng.randint(2500, 9000), is_crit))
        pages.append(Page(inst_id, tuple(answers)))
    return pages


def plan_line(code: str, pages: Sequence[Page], resumed: bool = False) -> str:
    """One line of the wrk plan file (format in bench/mixed.lua); ``resumed``: the student has already
    submitted the pages before ``pages`` (the login resumes, it is not the code's first use). No
    student cookie: the login starts a new sitting, so the script takes the one the login sets."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", code):
        raise ValueError(f"unsafe token for the plan file: {code!r}")
    parts = []
    for p in pages:
        items = ",".join(f"{a.item}={a.value}={a.ms}{'!' if a.critical else ''}" for a in p.answers)
        parts.append(f"{p.instrument}:{items}")
    return f"{code}\t{';'.join(parts)}" + ("\tr" if resumed else "")


def parse_plan_line(line: str) -> tuple[str, list[Page], bool]:
    """The inverse of plan_line (what the Lua script reads), for checks and tests."""
    code, rest, *flag = line.rstrip("\n").split("\t")
    pages = []
    for chunk in rest.split(";"):
        inst, _, items = chunk.partition(":")
        answers = []
        for a in items.split(","):
            crit = a.endswith("!")
            n, v, ms = a.rstrip("!").split("=")
            answers.append(Answer(int(n), int(v) if re.fullmatch(r"-?\d+", v) else v, int(ms), crit))
        pages.append(Page(inst, tuple(answers)))
    return code, pages, flag == ["r"]


def requests_per_student(pages: Sequence[Page]) -> int:
    """GET /s/, POST /s/, per page GET + autosaves + POST, GET /s/done."""
    return 2 + sum(2 + len(p.answers) for p in pages) + 1


# --------------------------------------------------------------------------- verdict (pure)


COUNTERS = ("logins", "completed", "submitted", "answers")


def expected_from_wrk(counts: Mapping[str, float]) -> dict[str, int]:
    """What the database must have gained according to the answers wrk received."""
    return {"logins": int(counts.get("login_ok", 0) - counts.get("resumed_logins", 0)), "completed": int(counts.get("battery_submitted", 0)),
            "submitted": int(counts.get("page_post_ok", 0)), "answers": int(counts.get("answer_ok", 0))}


def verdict(wrk_out: Mapping[str, Any], db_delta: Mapping[str, int], *, sample_checked: int,
            sample_mismatches: int, min_sample: int = 1) -> list[str]:
    """Problems with one round ([] = clean): errors seen by wrk, lost or filler requests, or a
    database that does not match the acknowledged traffic. A request in flight when wrk stopped may
    have committed without wrk seeing its answer: at most one per connection, in all counters together."""
    s, c = wrk_out["summary"], wrk_out["counts"]
    problems = []
    for k in ("err_connect", "err_read", "err_write", "err_status", "err_timeout"):
        if s.get(k, 0):
            problems.append(f"wrk {k}={s[k]}")
    bad = {k: v for k, v in (wrk_out.get("bad") or {}).items() if v}
    if bad:
        problems.append(f"unexpected answers {bad}")
    for k in ("lost", "exhausted"):
        if c.get(k, 0):
            problems.append(f"{k}={c[k]}")
    answered = sum(v for k, v in c.items() if k.endswith(("_ok", "_bad")))
    if answered != s.get("requests"):
        problems.append(f"wrk counted {s.get('requests')} answers, the script {answered}")
    slack = int(c.get("inflight_at_stop", 0))
    exp = expected_from_wrk(c)
    excess = {}
    for k in COUNTERS:
        got = int(db_delta.get(k, 0))
        if got < exp[k] or got > exp[k] + slack:
            problems.append(f"database {k}: +{got}, wrk acknowledged {exp[k]} (+{slack} in flight)")
        excess[k] = max(0, got - exp[k])
    # an unanswered login, autosave or page post adds to one of these; a code completes only with the
    # last page's post, so "completed" can run ahead only together with "submitted"
    extra = excess["logins"] + excess["answers"] + excess["submitted"]
    if extra > slack:
        problems.append(f"database gained {extra} more than acknowledged, only {slack} requests were in flight")
    if excess["completed"] > excess["submitted"]:
        problems.append(f"{excess['completed']} codes completed beyond the acknowledged last pages, "
                        f"with only {excess['submitted']} page posts unanswered")
    if sample_checked < min(min_sample, int(c.get("students_finished", 0))):
        problems.append(f"only {sample_checked} finished students decrypted")
    if sample_mismatches:
        problems.append(f"{sample_mismatches} decrypted answers differ from the plan")
    return problems


# --------------------------------------------------------------------------- machine load


def _proc_cpu_seconds(pid: int) -> float:
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _tree(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in pathlib.Path(f"/proc/{p}/task").iterdir():
                todo.extend(int(x) for x in (t / "children").read_text().split())
        except OSError:
            continue
    return out


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    vals = [int(x) for x in pathlib.Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = vals[3] + vals[4]
    tck = os.sysconf("SC_CLK_TCK")
    return (sum(vals[:8]) - idle) / tck, sum(vals[:8]) / tck


def _db_backend_pids(world: World) -> list[int]:
    """PostgreSQL backends serving this benchmark's database (their CPU belongs to the server side)."""
    if world.ctx.engine.dialect.name != "postgresql":
        return []
    with world.ctx.engine.connect() as c:
        return [int(p) for p in c.exec_driver_sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).scalars()]


# --------------------------------------------------------------------------- set-up


def mint_student_cookie(sitting: Any, secret: str = SECRET) -> str:
    """The mhp_student cookie of a sitting begun through the service (``responses.begin(...).sitting``):
    the value the login sets for it (``web.blueprints.student.cookie_value``, same serializer and salt).
    Only the code's current sitting works: a later login with the same code ends it."""
    from mh_platform.web.blueprints.student import cookie_value

    return cookie_value(secret, sitting)


@dataclass
class World:
    ctx: Any
    campaign_id: uuid.UUID
    students: list[tuple[str, uuid.UUID, uuid.UUID]]  # (code, access code id, student id)
    battery: tuple[str, ...] = ()
    plans: dict[str, list[Page]] = field(default_factory=dict)


def _build_world(url: str, key: str, n: int) -> World:
    import sqlalchemy as sa

    from bench.bench_screening import _context, _seed
    from mh_platform.db.models import AccessCode
    from mh_platform.services import campaigns

    ctx = _context(url, key)
    _actor, cid = _seed(ctx, n)
    codes = campaigns.issue_codes_system(ctx, cid)
    with ctx.uow() as uow:
        ids = dict(uow.session.execute(sa.select(AccessCode.student_id, AccessCode.id)
                                       .where(AccessCode.campaign_id == cid)).tuples().all())
    students = [(code, ids[sid], sid) for sid, code in codes.items()]
    random.Random(7).shuffle(students)
    return World(ctx, cid, students)


def _preflight(world: World, port: int) -> None:
    """A real login through the Python client: the server's mhp_student cookie must be the one
    ``mint_student_cookie`` makes for that sitting (the script reads it from the login answer), and
    the battery is read from the service with it."""
    import base64

    from itsdangerous import URLSafeTimedSerializer

    from bench.bench_screening import Client
    from mh_platform.services import responses

    code, acid, _sid = world.students.pop()
    c = Client(port)
    c.login(code)
    ser = URLSafeTimedSerializer(SECRET, salt=STUDENT_COOKIE_SALT)
    data = ser.loads(c.cookies["mhp_student"])
    sitting = responses.Sitting(uuid.UUID(data["c"]), base64.urlsafe_b64decode(data["t"] + "=" * (-len(data["t"]) % 4)))
    if sitting.access_code_id != acid or data != ser.loads(mint_student_cookie(sitting)):
        raise RuntimeError("the minted student cookie differs from the server's")
    world.battery = responses.load(world.ctx, sitting).battery


def _snapshot(world: World) -> dict[str, int]:
    import sqlalchemy as sa

    from mh_platform.db.flags import Flag
    from mh_platform.db.models import AccessCode, Response

    cid = world.campaign_id
    with world.ctx.uow() as uow:
        s = uow.session

        def one(q: Any) -> int:
            return int(s.scalar(q) or 0)

        ac = sa.select(sa.func.count()).select_from(AccessCode).where(AccessCode.campaign_id == cid)
        rs = sa.select(sa.func.count()).select_from(Response).where(Response.campaign_id == cid)
        return {"logins": one(ac.where(AccessCode.first_used_at.is_not(None))),
                "completed": one(ac.where(AccessCode.completed_at.is_not(None))),
                "submitted": one(rs.where(Response.status == "submitted")),
                "responses": one(rs),
                "answers": one(sa.select(sa.func.sum(Response.n_answered)).where(Response.campaign_id == cid)),
                "critical_fired": one(rs.where(Response.critical_fired.is_(True))),
                "flags": one(sa.select(sa.func.count()).select_from(Flag))}


def _check_sample(world: World, finished: Sequence[str], by_code: Mapping[str, tuple[uuid.UUID, uuid.UUID]]
                  ) -> tuple[int, int]:
    """Decrypt the answers of up to SAMPLE finished students; (students checked, mismatching pages)."""
    import sqlalchemy as sa

    from mh_platform.db.models import AccessCode, Response

    ctx = world.ctx
    sample = random.Random(len(finished)).sample(list(finished), min(SAMPLE, len(finished)))
    bad = 0
    with ctx.uow() as uow:
        s = uow.session
        for code in sample:
            acid, sid = by_code[code]
            if s.scalar(sa.select(AccessCode.completed_at).where(AccessCode.id == acid)) is None:
                bad += 1
                continue
            rows = {r.instrument_id: r for r in s.scalars(sa.select(Response).where(
                Response.campaign_id == world.campaign_id, Response.student_id == sid))}
            for page in world.plans[code]:
                r = rows.get(page.instrument)
                if r is None or r.status != "submitted" or bool(r.critical_fired) != page.critical:
                    bad += 1
                    continue
                got = json.loads(ctx.keyring.open_field(s, r.answers_enc, table="response", column="answers_enc",
                                                        row_id=r.id))
                ms = {str(a.item): a.ms for a in page.answers}
                if got != page.as_dict() or (r.item_ms or {}) != ms:
                    bad += 1
            if set(rows) != {p.instrument for p in world.plans[code]}:
                bad += 1
    return len(sample), bad


# --------------------------------------------------------------------------- one round


def _students_per_round(seconds: float, connections: int) -> int:
    per_thread = math.ceil(MAX_RPS_PLANNED * seconds / REQUESTS_PER_STUDENT_MIN / connections) + 2
    return per_thread * connections


def _wrk() -> str:
    exe = shutil.which("wrk")
    if exe is None:
        raise RuntimeError("wrk is not installed: run `make bench-deps`")
    return exe


def parse_wrk_text(out: str) -> dict[str, float]:
    """Requests/s, non-2xx/3xx and socket errors from wrk's plain report (no script)."""
    got: dict[str, float] = {"rps": 0.0, "non_2xx_3xx": 0.0, "socket_errors": 0.0}
    m = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if m:
        got["rps"] = float(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if m:
        got["non_2xx_3xx"] = float(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        got["socket_errors"] = float(sum(int(x) for x in m.groups()))
    return got


def _context_rps(port: int, connections: int, seconds: float = 5.0) -> dict[str, float]:
    """The cheapest page of the same app (GET /s/: template, session cookie, no database) at the same
    concurrency, just before the rounds: how much the shared box could serve at that moment."""
    cmd = [_wrk(), f"-t{min(connections, 2)}", f"-c{connections}", f"-d{seconds:g}s", f"http://127.0.0.1:{port}/s/"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=False).stdout
    return parse_wrk_text(out)


def _start_insert_ceiling(url: str, key: str, gargs: str) -> tuple[subprocess.Popen, int]:
    """The ceiling measured in the same run: the reference's minimal single-row insert endpoint (a bare
    Flask app, one JSON POST, one Core INSERT in its own transaction: ``bench/bare_insert_app.py``) on
    the same database, gunicorn with the same worker settings. It idles while a mixed round runs and is
    loaded right after each round (``_insert_ceiling``)."""
    from bench.bench_screening import META, _free_port, _serve, _wrk_load
    from mh_platform.db.engine import make_engine

    eng = make_engine(url)
    META.create_all(eng)
    eng.dispose()
    port = _free_port()
    proc = _serve(url, key, port, gunicorn_args=shlex.split(gargs), app="bench.bare_insert_app:app")
    _wrk_load(port, "insert", [], 2.0)  # warm-up: workers forked, statements prepared
    return proc, port


def _insert_ceiling(port: int, seconds: float) -> dict[str, float]:
    """wrk on the minimal insert endpoint (``bench/save.lua`` insert mode, 32 connections)."""
    from bench.bench_screening import _wrk_load

    return _wrk_load(port, "insert", [], seconds)


def _advance(world: World, code: str, access_code_id: uuid.UUID, pages: Sequence[Page]) -> None:
    """Log a student in and submit these pages through the service (set-up, not measured)."""
    from mh_platform.services import responses

    sitting = responses.begin(world.ctx, code).sitting  # the wrk login later starts its own sitting
    for p in pages:
        responses.submit(world.ctx, sitting, p.instrument, p.as_dict(), {str(a.item): a.ms for a in p.answers})


def _round(world: World, port: int, students: list[tuple[str, uuid.UUID, uuid.UUID]], seconds: float,
           connections: int, server_pid: int, rng: random.Random) -> dict[str, Any]:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mhp-mixed-"))
    plan_path, out_path = tmp / "plan.tsv", tmp / "out.json"
    n_crit = max(1, round(CRITICAL_SHARE * len(students)))
    kinds = list(CRITICAL_KINDS)
    crit_at = {i * len(students) // n_crit: kinds[i % len(kinds)] for i in range(n_crit)}
    lines = []
    for i, (code, acid, _sid) in enumerate(students):
        pages = answer_plan(rng, world.battery, crit_at.get(i))
        world.plans[code] = pages
        # the first student of wrk thread i starts i mod 5 pages in (submitted here through the service),
        # so the threads do not move through the battery in lockstep (all logging in, or all posting
        # their last page, at the same moment)
        skip = i % len(world.battery) if i < connections else 0
        if skip:
            _advance(world, code, acid, pages[:skip])
        lines.append(plan_line(code, pages[skip:], resumed=bool(skip)))
    plan_path.write_text("\n".join(lines) + "\n")
    before = _snapshot(world)
    env = dict(os.environ, MHP_WRK_PLAN=str(plan_path), MHP_WRK_OUT=str(out_path), MHP_WRK_THREADS=str(connections))
    cmd = [_wrk(), f"-t{connections}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "5s", "--latency",
           "-s", str(LUA), f"http://127.0.0.1:{port}"]
    load0 = os.getloadavg()
    busy0, tot0 = _machine_cpu()
    srv0 = sum(_proc_cpu_seconds(p) for p in _tree(server_pid))
    db0 = {p: _proc_cpu_seconds(p) for p in _db_backend_pids(world)}
    ru0 = os.times()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120, check=False)
    wall = time.perf_counter() - t0
    ru1 = os.times()
    srv1 = sum(_proc_cpu_seconds(p) for p in _tree(server_pid))
    db_cpu = sum(_proc_cpu_seconds(p) - db0.get(p, 0.0) for p in _db_backend_pids(world))
    busy1, tot1 = _machine_cpu()
    load1 = os.getloadavg()
    if proc.returncode != 0 or not out_path.exists():
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-2000:]} {proc.stdout[-2000:]}")
    out = json.loads(out_path.read_text())
    after = _snapshot(world)  # requests in flight at the stop still finish on the server: wait for quiet
    for _ in range(20):
        time.sleep(0.3)
        again = _snapshot(world)
        if again == after:
            break
        after = again
    delta = {k: after[k] - before[k] for k in after}
    by_code = {code: (acid, sid) for code, acid, sid in students}
    checked, mismatches = _check_sample(world, out["finished"], by_code)
    problems = verdict(out, delta, sample_checked=checked, sample_mismatches=mismatches)
    s, lat, c = out["summary"], out["latency_us"], out["counts"]
    dur = s["duration_us"] / 1e6
    ncpu = os.cpu_count() or 1
    wrk_cpu = (ru1.children_user + ru1.children_system) - (ru0.children_user + ru0.children_system)
    machine_busy = busy1 - busy0
    row = {
        "rps": s["requests"] / dur, "requests": s["requests"], "duration_s": round(dur, 2),
        "p50_ms": lat["p50"] / 1000, "p90_ms": lat["p90"] / 1000, "p99_ms": lat["p99"] / 1000,
        "p999_ms": lat["p99.9"] / 1000, "max_ms": lat["max"] / 1000,
        "errors": sum(int(s[k]) for k in ("err_connect", "err_read", "err_write", "err_timeout")),
        "non_2xx_3xx": int(s["err_status"]),
        "unexpected": sum(int(v) for v in (out.get("bad") or {}).values()),
        "mix": {k[:-3]: int(c[k]) for k in sorted(c) if k.endswith("_ok") and c[k]},
        "students_finished": int(c["students_finished"]), "critical_acks": int(c["critical_acks"]),
        "help_pages": int(c["help_pages"]), "students_started": int(c["students_started"]),
        "db_delta": delta, "sample_decrypted": checked, "sample_mismatches": mismatches,
        "problems": problems, "passed_checks": not problems,
        "loadavg_before": [round(x, 2) for x in load0], "loadavg_after": [round(x, 2) for x in load1],
        "cpu_cores": ncpu,
        "cpu_server_s": round(srv1 - srv0, 2), "cpu_wrk_s": round(wrk_cpu, 2),
        "cpu_machine_busy_s": round(machine_busy, 2), "cpu_machine_total_s": round(tot1 - tot0, 2),
        "cpu_db_backends_s": round(db_cpu, 2),
        "cpu_others_s": round(machine_busy - (srv1 - srv0) - wrk_cpu - db_cpu, 2), "wall_s": round(wall, 2),
    }
    shutil.rmtree(tmp, ignore_errors=True)
    return row


# --------------------------------------------------------------------------- profile round


PROFILE_CONF = HERE / "gunicorn_profile.py"


def _access_log_summary(path: pathlib.Path) -> dict[str, dict[str, float]]:
    """Per request kind: count, mean/p50/p99 server time (ms) from the profile round's access log."""
    per: dict[str, list[float]] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        per.setdefault(request_kind(parts[0], parts[1], int(parts[2]) if parts[2].isdigit() else 0), []
                       ).append(int(parts[3]) / 1000)
    out = {}
    for k, v in sorted(per.items()):
        v.sort()
        out[k] = {"n": len(v), "mean_ms": round(statistics.fmean(v), 2), "p50_ms": round(v[len(v) // 2], 2),
                  "p99_ms": round(v[max(0, math.ceil(len(v) * 0.99) - 1)], 2), "total_s": round(sum(v) / 1000, 2)}
    return out


def request_kind(method: str, path: str, status: int = 0) -> str:
    """The request types of the mix, from method and path."""
    if path == "/s/":
        return "login" if method == "POST" else "login_page"
    if path == "/s/answer":
        return "answer"
    if path.startswith("/s/p/"):
        return "page_post" if method == "POST" else "page_get"
    if path == "/s/done":
        return "done"
    return f"other:{method} {path}"


# --------------------------------------------------------------------------- entry


def _median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else 0.0


def _bench_db(label: str, url: str, key: str) -> tuple[list[dict], str]:
    from bench.bench_screening import _free_port, _serve

    seconds = float(_env("SECONDS", "15"))
    rounds = int(_env("ROUNDS", "3"))
    warm = float(_env("WARMUP", "5"))
    conns = int(_env("CONNECTIONS", "32"))
    gargs = _env("GUNICORN", DEFAULT_GUNICORN)
    profile = _env("PROFILE", "0") == "1"
    plan_rounds = [warm] * (warm > 0) + [seconds] * rounds
    sizes = [_students_per_round(d, conns) for d in plan_rounds]
    prof_size = _students_per_round(seconds, conns) if profile else 0
    world = _build_world(url, key, sum(sizes) + prof_size + 1)
    rng = random.Random(42)
    port = _free_port()
    proc = _serve(url, key, port, gunicorn_args=shlex.split(gargs))
    results, notes = [], ""
    context: dict[str, float] = {"rps": 0.0}
    ceiling_proc, ceiling_port = (_start_insert_ceiling(url, key, gargs) if _env("CEILING", "1") == "1"
                                  else (None, 0))
    try:
        _preflight(world, port)
        context = _context_rps(port, conns)
        print(f"   [{label}] context: GET /s/ alone {context['rps']:.0f} req/s", flush=True)
        for i, (d, n) in enumerate(zip(plan_rounds, sizes, strict=True)):
            part, world.students = world.students[:n], world.students[n:]
            r = _round(world, port, part, d, conns, proc.pid, rng)
            r["warmup"] = warm > 0 and i == 0
            print(f"   [{label}] {'warm-up' if r['warmup'] else 'round'} {i}: {r['rps']:.0f} req/s p50 "
                  f"{r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms errors {r['errors']}+{r['non_2xx_3xx']} "
                  f"load {r['loadavg_before'][0]} cpu server {r['cpu_server_s']} s db {r['cpu_db_backends_s']} s "
                  f"wrk {r['cpu_wrk_s']} s "
                  f"others {r['cpu_others_s']} s {'' if r['passed_checks'] else r['problems']}", flush=True)
            results.append(r)
            if ceiling_proc is not None and not r["warmup"]:  # interleaved: right after each measured round
                got = _insert_ceiling(ceiling_port, d)
                r["ceiling_insert_rps"] = round(got["rps"], 1)
                r["ratio_to_insert"] = round(r["rps"] / got["rps"], 4) if got["rps"] else 0.0
                print(f"   [{label}] ceiling: minimal insert endpoint {got['rps']:.0f} req/s (p99 "
                      f"{got['p99']:.1f} ms, errors {got['errors']}); mixed/insert {r['ratio_to_insert']:.2f}",
                      flush=True)
    finally:
        for pr in (proc, ceiling_proc):
            if pr is not None:
                os.killpg(pr.pid, signal.SIGTERM)
                pr.wait(timeout=30)
    if profile:
        notes = _profile_round(label, url, key, world, conns, seconds, gargs, rng, prof_size)
    world.ctx.engine.dispose()
    measured = [r for r in results if not r["warmup"]]
    rps = _median([r["rps"] for r in measured])
    p99 = _median([r["p99_ms"] for r in measured])
    clean = all(r["passed_checks"] for r in results)
    errors = sum(r["errors"] + r["non_2xx_3xx"] + r["unexpected"] for r in results)
    mix: dict[str, int] = {}
    for r in measured:
        for k, v in r["mix"].items():
            mix[k] = mix.get(k, 0) + v
    common = {"p50_ms": round(_median([r["p50_ms"] for r in measured]), 1), "p99_ms": round(p99, 1),
              "errors": errors, "non_2xx_3xx": sum(r["non_2xx_3xx"] for r in results),
              "verified": clean, "mix": mix, "rounds": len(measured), "duration_s": seconds,
              "connections": conns, "workers": f"gunicorn {gargs}", "load_generator": f"wrk -t{conns} -c{conns}",
              "database": label, "target_applies": label == "sqlite",
              "context_login_page_only_rps": round(context["rps"], 1),
              "per_round": [{k: r[k] for k in ("rps", "p50_ms", "p99_ms", "errors", "non_2xx_3xx", "unexpected",
                                               "students_finished", "db_delta", "sample_decrypted", "loadavg_before",
                                               "cpu_server_s", "cpu_db_backends_s", "cpu_wrk_s",
                                               "cpu_others_s", "cpu_machine_total_s", "problems", "warmup")}
                            for r in results]}
    for r in common["per_round"]:
        for k in ("rps", "p50_ms", "p99_ms"):
            r[k] = round(r[k], 1)
    ratios = [r["ratio_to_insert"] for r in measured if "ratio_to_insert" in r]
    ceiling = _median([r["ceiling_insert_rps"] for r in measured if "ceiling_insert_rps" in r])
    common.update(ceiling_insert_rps=round(ceiling, 1), ratio_to_insert=round(_median(ratios), 4) if ratios else None,
                  target_rps_on_this_machine=round(TARGET_RATIO_TO_INSERT * ceiling, 1) if ceiling else None)
    for pr, r in zip(common["per_round"], results, strict=True):
        pr.update({k: r[k] for k in ("ceiling_insert_rps", "ratio_to_insert") if k in r})
    rows = [absolute(f"screening.mixed_traffic.{label}", "req/s", rps, TARGET_RPS, higher_is_better=True, **common),
            absolute(f"screening.mixed_traffic_p99.{label}", "ms", p99, TARGET_P99_MS, higher_is_better=False,
                     errors=errors, verified=clean, database=label, target_applies=label == "sqlite")]
    if ratios:
        rows.append(result(f"screening.mixed_traffic_vs_insert_ceiling.{label}", "ratio", _median(ratios), 1.0,
                           TARGET_RATIO_TO_INSERT, higher_is_better=True, errors=errors, verified=clean,
                           database=label, target_applies=label == "sqlite", ceiling_insert_rps=round(ceiling, 1),
                           mixed_rps=round(rps, 1),
                           note=(f"the absolute target {TARGET_RPS:.0f} req/s as a share of the reference machine's "
                                 f"minimal insert endpoint ({REFERENCE_INSERT_RPS:.0f} req/s, performance.md §2a); "
                                 "the ceiling is measured in the same run, interleaved with the rounds")))
    for row in rows:
        row["passed"] = bool(row["passed"] and clean and errors == 0 and measured)
    return rows, notes


def _profile_round(label: str, url: str, key: str, world: World, conns: int, seconds: float, gargs: str,
                   rng: random.Random, n: int) -> str:
    """One more round on a server that logs each request's time and runs cProfile in every worker."""
    import pstats

    from bench.bench_screening import _free_port, _serve

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="mhp-mixed-prof-"))
    access = tmp / "access.log"
    port = _free_port()
    extra = ["-c", str(PROFILE_CONF), "--access-logfile", str(access), "--access-logformat",
             "%(m)s %(U)s %(s)s %(D)s"]
    os.environ["MHP_BENCH_PROFILE_DIR"] = str(tmp)
    proc = _serve(url, key, port, gunicorn_args=shlex.split(gargs) + extra)
    try:
        part, world.students = world.students[:n], world.students[n:]
        r = _round(world, port, part, seconds, conns, proc.pid, rng)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        os.environ.pop("MHP_BENCH_PROFILE_DIR", None)
    kinds = _access_log_summary(access)
    clock = os.environ.get("MHP_BENCH_PROFILE_CLOCK", "wall")
    lines = [f"# mixed-traffic profile round ({label}, gunicorn {gargs}, cProfile: {clock}; cProfile makes it slower "
             f"than the measured rounds)", f"round: {r['rps']:.0f} req/s, p99 {r['p99_ms']:.1f} ms, "
             f"problems {r['problems']}", "", "## server time per request kind (access log %(D)s)"]
    for k, v in kinds.items():
        lines.append(f"{k:12s} {json.dumps(v)}")
    tx: dict[str, dict[str, float]] = {}
    for f in tmp.glob("tx-*.json"):
        for k, v in json.loads(f.read_text()).items():
            t = tx.setdefault(k, {"n": 0, "wait_s": 0.0, "hold_s": 0.0, "hold_max_s": 0.0})
            for m in ("n", "wait_s", "hold_s"):
                t[m] += v[m]
            t["hold_max_s"] = max(t["hold_max_s"], v["hold_max_s"])
    head = ("waiting for BEGIN IMMEDIATE (the SQLite write lock) and holding it" if label == "sqlite" else
            "how long each stays open (PostgreSQL: no database-wide lock; row locks are not measured)")
    lines += ["", f"## transactions per request kind: {head}",
              f"{'request':24s} {'tx':>6s} {'wait ms/tx':>11s} {'hold ms/tx':>11s} {'hold max ms':>12s} {'hold s':>8s}"]
    for k, t in sorted(tx.items(), key=lambda kv: -kv[1]["hold_s"]):
        n = max(1, int(t["n"]))
        lines.append(f"{k:24s} {int(t['n']):6d} {1000 * t['wait_s'] / n:11.2f} {1000 * t['hold_s'] / n:11.2f} "
                     f"{1000 * t['hold_max_s']:12.2f} {t['hold_s']:8.2f}")
    held = sum(t["hold_s"] for t in tx.values())
    if label == "sqlite":
        lines.append(f"lock held {held:.2f} s of the round's {r['duration_s']} s "
                     f"({100 * held / max(r['duration_s'], 1e-9):.0f} %); one writer at a time caps the rate at "
                     f"~{sum(t['n'] for t in tx.values()) / max(held, 1e-9):.0f} transactions/s")
    phases: dict[str, dict[str, list[float]]] = {}
    for f in tmp.glob("phases-*.json"):
        for kind, per in json.loads(f.read_text()).items():
            for ph, v in per.items():
                t = phases.setdefault(kind, {}).setdefault(ph, [0, 0.0, 0.0])
                for i in range(3):
                    t[i] += v[i]
    if phases:
        lines += ["", "## where the time goes, per request of each kind (inclusive; indented = inside the "
                  "service call above; wall includes waiting for the lock and for a CPU)",
                  f"{'kind / phase':44s} {'calls/req':>9s} {'wall ms':>8s} {'cpu ms':>7s}"]
        for kind in sorted(phases, key=lambda k: -phases[k].get("request (Flask app, whole)", [0])[0]):
            per = phases[kind]
            n = max(1, int(per.get("request (Flask app, whole)", [1])[0]))
            lines.append(f"{kind} ({n} requests; server total from the access log above)")
            def order(ph: str) -> tuple[int, str]:
                return (0 if ph.startswith("request") else 2 if ph.startswith(" ") else 1, ph)

            for ph in sorted(per, key=order):
                calls, wall, cpu = per[ph]
                lines.append(f"  {ph:42s} {calls / n:9.2f} {1000 * wall / n:8.2f} {1000 * cpu / n:7.2f}")
    stats_files = sorted(tmp.glob("prof-*.pstats"))
    if stats_files:
        import io

        buf = io.StringIO()
        st = pstats.Stats(*[str(p) for p in stats_files], stream=buf)
        st.sort_stats("cumulative").print_stats(60)
        buf.write("\n\n")
        st.sort_stats("tottime").print_stats(40)
        lines += ["", "## cProfile, all workers", buf.getvalue()]
    text = "\n".join(lines)
    (HERE / f"mixed_profile.{label}.txt").write_text(text + "\n")
    return text


def run() -> list[dict]:
    from bench.bench_screening import _databases, _drop, _fresh
    from mh_platform.services.keys import write_new_master_key_file

    key = str(pathlib.Path(tempfile.mkdtemp()) / "master.key")
    write_new_master_key_file(key)
    wanted = _env("DBS", "sqlite,postgresql").split(",")
    rows: list[dict] = []
    for label, url, _ in _databases():
        if label not in wanted:
            continue
        u = _fresh(label, url)
        try:
            got, _notes = _bench_db(label, u, key)
            rows += got
        except Exception as exc:  # noqa: BLE001 - report, go on with the other database
            rows.append({"name": f"screening.mixed_traffic.{label}", "unit": "error", "value": 0, "baseline": 0,
                         "ratio": 0, "target": 0, "passed": False, "error": repr(exc)[:500]})
        finally:
            _drop(label, u)
    return rows
