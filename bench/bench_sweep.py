"""Escalation sweep at city scale on PostgreSQL (issue 5): 100,000 open flags.

The deadlines are staggered so that about 100 flags fall due every minute (the steady state of a
city whose counsellors are busy). Each measured sweep runs at the next minute, as the scheduler
would, and escalates what is due (claim by conditional UPDATE, event, hash-chained audit entry and
outbox rows in the same transaction). Baseline, measured in the same run on the same database: a
bare ``SELECT count(*)`` over the same open flags. Target: under 2 s per sweep (absolute).

A second row reports a backlog sweep (about 1,000 flags due at once, e.g. after an outage).

Database: MHP_BENCH_PG_URL (a server database URL; the bench creates and drops ``mhp_bench_sweep``).
"""

from __future__ import annotations

import os
import random
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from bench.common import absolute, result

N_FLAGS = int(os.environ.get("MHP_BENCH_SWEEP_FLAGS", "100000"))
PER_MINUTE = 100
COUNTIES, SCHOOLS_PER_COUNTY, CLASSES_PER_SCHOOL = 5, 40, 10
DB = "mhp_bench_sweep"


def _admin_url() -> str:
    from mh_platform.db.engine import normalise_url

    return normalise_url(os.environ.get("MHP_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))


def _fresh_db() -> str:
    from mh_platform.db import migrate

    admin = sa.create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        c.exec_driver_sql(f'CREATE DATABASE "{DB}"')
    admin.dispose()
    url = _admin_url().rsplit("/", 1)[0] + "/" + DB
    migrate.upgrade(url)
    return url


def _drop_db() -> None:
    admin = sa.create_engine(_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
    admin.dispose()


def _context(url: str, keyfile: str):
    from mh_platform.config import load_settings
    from mh_platform.core.clock import FixedClock
    from mh_platform.services.context import build_context
    from mh_platform.services.keys import bootstrap_keys, write_new_master_key_file

    write_new_master_key_file(keyfile)
    st = load_settings({"env": "test", "database_url": url, "master_key_file": keyfile, "secret_key": "b" * 40},
                       environ={})
    ctx = build_context(st, clock=FixedClock(datetime(2026, 9, 14, 8, 0, tzinfo=UTC)))
    bootstrap_keys(ctx)
    return ctx


def _seed(ctx, base: datetime) -> None:
    """Org tree, one counsellor/leader per school and an officer per county, N students, N open flags."""
    from mh_platform.db.models import Flag, OrgUnit, RoleAssignment, Student, User
    from mh_platform.services.org import path_for

    rng = random.Random(5)
    units, users, roles, classes = [], [], [], []

    def unit(kind, name, code, parent, depth):
        uid = uuid.uuid4()
        row = {"id": uid, "parent_id": parent["id"] if parent else None, "kind": kind, "name": name, "code": code,
               "path": path_for(parent["path"] if parent else None, uid), "depth": depth, "stage": None,
               "grade_level": 7 if kind in ("grade", "class") else None, "created_at": base}
        units.append(row)
        return row

    def user(role, u):
        uid = uuid.uuid4()
        users.append({"id": uid, "username": f"{role}.{u['code']}", "display_name": role, "email":
                      f"{role}.{u['code']}@bench.example", "password_hash": "x", "session_token": uuid.uuid4().hex,
                      "is_active": True, "failed_logins": 0, "password_changed_at": base, "created_at": base})
        roles.append({"id": uuid.uuid4(), "user_id": uid, "role": role, "unit_id": u["id"], "created_at": base})

    city = unit("city", "市", "c", None, 0)
    user("city_officer", city)
    for ci in range(COUNTIES):
        county = unit("county", f"县区{ci}", f"c{ci}", city, 1)
        user("county_officer", county)
        for si in range(SCHOOLS_PER_COUNTY):
            school = unit("school", f"学校{ci}-{si}", f"c{ci}s{si}", county, 2)
            user("counsellor", school)
            user("school_leader", school)
            grade = unit("grade", "七年级", f"c{ci}s{si}g", school, 3)
            for k in range(CLASSES_PER_SCHOOL):
                cls = unit("class", f"{k + 1}班", f"c{ci}s{si}k{k}", grade, 4)
                classes.append((cls, school))
    students, flags = [], []
    for i in range(N_FLAGS):
        cls, school = classes[i % len(classes)]
        sid = uuid.uuid4()
        students.append({"id": sid, "pseudonym": f"S{i:07d}", "name_enc": b"bench", "sex": "F", "created_at": base})
        level = rng.choice(["red", "orange", "orange", "yellow", "yellow", "yellow"])
        ack = base + timedelta(seconds=60 * (i // PER_MINUTE) + rng.uniform(0, 59))  # ~100 fall due per minute
        flags.append({"id": uuid.uuid4(), "student_id": sid, "school_unit_id": school["id"], "class_unit_id": cls["id"],
                      "unit_path": cls["path"], "level": level, "tier": "school", "status": "raised",
                      "is_watch": False, "opened_at": base - timedelta(hours=1), "tier_entered_at": base,
                      "ack_due_at": ack, "handle_due_at": ack + timedelta(days=2), "escalations": 0,
                      "county_informed_at": base, "version": 1})
    with ctx.uow() as uow:
        s = uow.session
        for model, rows in ((OrgUnit, units), (User, users), (RoleAssignment, roles)):
            s.execute(sa.insert(model), rows)
        for i in range(0, len(students), 10000):
            s.execute(sa.insert(Student), students[i:i + 10000])
            s.execute(sa.insert(Flag), flags[i:i + 10000])
        uow.commit()
    raw = sa.create_engine(str(ctx.engine.url.render_as_string(hide_password=False)), isolation_level="AUTOCOMMIT")
    with raw.connect() as c:
        c.exec_driver_sql("VACUUM ANALYZE")
    raw.dispose()


def run() -> list[dict]:
    from mh_platform.services.escalation import sweep

    base = datetime(2026, 9, 14, 8, 0, tzinfo=UTC)
    url = _fresh_db()
    rows: list[dict] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            ctx = _context(url, f"{tmp}/master.key")
            t0 = time.perf_counter()
            _seed(ctx, base)
            seed_s = time.perf_counter() - t0
            open_count = sa.text("SELECT count(*) FROM flag WHERE status != 'closed'")

            def count_open() -> int:
                with ctx.engine.connect() as c:
                    return c.execute(open_count).scalar_one()

            assert count_open() == N_FLAGS
            baseline = statistics.median(_timed(count_open) for _ in range(7))
            times, escalated, checked = [], [], []
            for minute in range(1, 8):  # the scheduler's next seven ticks
                now = base + timedelta(minutes=minute)
                t = time.perf_counter()
                out = sweep(ctx, now)
                times.append(time.perf_counter() - t)
                escalated.append(len(out["escalated"]) + out["reminded"])
                checked.append(out["checked"])
            steady = statistics.median(times)
            rows.append(absolute("sweep_100k_open_flags_per_minute", "s/sweep", steady, 2.0,
                                 open_flags=N_FLAGS, due_per_sweep=int(statistics.median(escalated)),
                                 checked_per_sweep=int(statistics.median(checked)),
                                 baseline_count_s=round(baseline, 6), ratio_to_count=round(steady / baseline, 2),
                                 seed_seconds=round(seed_s, 1)))
            rows.append(result("sweep_vs_bare_count_open_flags", "s", steady, baseline, 100.0, higher_is_better=False,
                               note="a minute's sweep (~100 escalations written) vs a bare count(*) of the same "
                                    "open flags; bound: within 100x"))
            later = base + timedelta(minutes=18)  # ~1,000 due at once (a 10-minute outage)
            t = time.perf_counter()
            out = sweep(ctx, later)
            backlog = time.perf_counter() - t
            rows.append(absolute("sweep_backlog_1000_due", "s/sweep", backlog, 10.0,
                                 due=len(out["escalated"]) + out["reminded"]))
            ctx.engine.dispose()
    finally:
        _drop_db()
    return rows


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
