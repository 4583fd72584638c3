"""T3 — ciphertext at rest (security.md §5 T3, issue 6 "Must show").

More than 1,000 unique canary strings go through the services into every encrypted column that
``key_ops.envelope_columns()`` lists (a column added later without canaries fails this test). Then
every canary is searched for as UTF-8, UTF-16LE, hex (both cases) and base64 (three alignments) in:
SQLite's database file, its ``-wal`` (before the checkpoint) and ``-shm``, the database file again
after ``PRAGMA wal_checkpoint(TRUNCATE)``; on PostgreSQL a plain ``pg_dump``; a backup made as
``mhp backup create`` makes it (the PostgreSQL custom-format archive read back with ``pg_restore``); and in both cases
everything the application and SQLAlchemy logged during the run (root logger at DEBUG, engine
statements at INFO) — 0 hits. Positive controls planted the same ways prove the search finds
plaintext in each of those places.
"""

from __future__ import annotations

import json
import logging
import pathlib
import sqlite3
import subprocess
import uuid

import pytest
import sqlalchemy as sa
from cases_world import quick_argon2  # noqa: F401 - autouse fixture
from support_canary_world import seed
from support_security import Canaries, Scanner, describe

from mh_platform.db.engine import normalise_url
from mh_platform.db.models import Guardian, Setting
from mh_platform.services import escalation, key_ops, referrals
from mh_platform.services.key_ops import envelope_columns

MIN_CANARIES = 1000


@pytest.fixture
def app_log(tmp_path):
    """Everything logged during the test, to a file (root DEBUG; SQLAlchemy statements at INFO)."""
    path = tmp_path / "app.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    sa_log = logging.getLogger("sqlalchemy.engine")
    old = (root.level, sa_log.level)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    sa_log.setLevel(logging.INFO)
    yield path, handler
    root.removeHandler(handler)
    root.setLevel(old[0])
    sa_log.setLevel(old[1])
    handler.close()


def _opened_values(ctx) -> dict[str, list[str]]:
    """System-open every envelope in the database: 'table.column' -> plaintexts."""
    out: dict[str, list[str]] = {}
    with ctx.uow() as uow:
        s = uow.session
        for table, col in envelope_columns():
            vals = []
            for row_id, blob in s.execute(sa.select(table.c.id, col).where(col.is_not(None))):
                vals.append(ctx.keyring.open_field(s, blob, table=table.name, column=col.name, row_id=row_id))
            out[f"{table.name}.{col.name}"] = vals
    return out


def _plant_controls(ctx, w, cn_control: Canaries) -> dict[str, str]:
    """Plaintext written where a leak would be: a JSON column, a raw envelope column, the log."""
    in_json = cn_control.text("control.setting", "对照")
    in_bytes = cn_control.text("control.bytea", "对照")
    in_log = cn_control.text("control.log", "对照")
    with ctx.uow() as uow:
        s = uow.session
        s.add(Setting(key="t3_control", value={"note": in_json}))
        s.execute(sa.insert(Guardian).values(id=uuid.uuid4(), student_id=w.students[0], relation="other",
                                             name_enc=in_bytes.encode("utf-8"), phone_enc=None, phone_bidx=None,
                                             created_at=ctx.now()))
        uow.commit()
    logging.getLogger("mh_platform.t3").warning("control %s", in_log)
    return {"json": in_json, "bytea": in_bytes, "log": in_log}


def test_canaries_are_nowhere_at_rest(fresh_ctx, fresh_db_url, app_log, tmp_path):
    ctx = fresh_ctx
    log_path, handler = app_log
    seeded = seed(ctx)
    # a scheduler cycle over the seeded data (system work: no plaintext may reach logs)
    referrals.sweep(ctx)
    escalation.sweep(ctx)
    cn = seeded.canaries

    # 1. every encrypted column holds canaries, and they decrypt to exactly what went in
    opened = _opened_values(ctx)
    for value in opened["response.answers_enc"]:  # numeric answers: the JSON payload is the canary
        if value not in cn.issued:
            cn.given(value, "response.answers_enc")
    for code in set(seeded.diagnoses):  # a category code, sealed (not a column)
        cn.given(code, "referral.diagnosis_enc")
    by_target = cn.by_target()
    columns = {f"{t.name}.{c.name}" for t, c in envelope_columns()}
    missing = sorted(col for col in columns if not by_target.get(col))
    assert missing == [], f"encrypted columns without canaries: {missing}"
    for col in sorted(columns):
        stored = set(opened[col])
        lost = [c for c in by_target[col] if c not in stored]
        assert lost == [], f"{col}: {len(lost)} canaries not found decrypted, e.g. {lost[:3]}"
    assert not set(by_target) - columns, "canaries aimed at a column that is not encrypted"
    assert len(cn.issued) >= MIN_CANARIES, len(cn.issued)
    json.loads(opened["response.answers_enc"][0])  # really the answers JSON

    scanner = Scanner(list(cn.issued))
    control = _plant_controls(ctx, seeded.world, Canaries("C"))
    ctl = Scanner(list(control.values()))
    hits = []
    found_controls: dict[str, set[str]] = {}

    def check(data: bytes, where: str) -> None:
        hits.extend(scanner.scan(data, where))
        found_controls[where] = {h.canary for h in ctl.scan(data, where)}

    # a backup as `mhp backup create` makes it (SQLite online backup / pg_dump -Fc, read back as SQL)
    backup = key_ops.create_backup(ctx, str(tmp_path / "backups" / "b0"))
    if normalise_url(fresh_db_url).startswith("sqlite"):
        check(backup.read_bytes(), "backup")
    else:
        check(subprocess.run(["pg_restore", "-f", "-", str(backup)], capture_output=True, check=True,
                             timeout=300).stdout, "backup")
    assert found_controls["backup"] >= {control["json"], control["bytea"]}

    url = normalise_url(fresh_db_url)
    if url.startswith("sqlite"):
        db = pathlib.Path(url.removeprefix("sqlite:///"))
        wal, shm = pathlib.Path(f"{db}-wal"), pathlib.Path(f"{db}-shm")
        assert wal.exists() and wal.stat().st_size > 0, "expected WAL mode with pending frames"
        check(wal.read_bytes(), "sqlite-wal")  # before any checkpoint
        check(shm.read_bytes() if shm.exists() else b"", "sqlite-shm")
        check(db.read_bytes(), "sqlite-db(before checkpoint)")
        ctx.engine.dispose()  # no pooled connection holds a read snapshot
        raw = sqlite3.connect(db, isolation_level=None)
        try:
            busy, _, _ = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            raw.close()
        assert busy == 0 and (not wal.exists() or wal.stat().st_size == 0)
        check(db.read_bytes(), "sqlite-db")
        assert found_controls["sqlite-wal"] | found_controls["sqlite-db"] >= {control["json"], control["bytea"]}
    else:
        dump = subprocess.run(["pg_dump", "--no-owner", "-d", fresh_db_url.replace("+psycopg", "")],
                              capture_output=True, check=True, timeout=300).stdout
        assert b"CREATE TABLE public.student" in dump
        (tmp_path / "dump.sql").write_bytes(dump)
        check(dump, "pg_dump")
        # the plaintext JSON appears as text, the raw bytes as bytea hex: the search finds both
        assert found_controls["pg_dump"] >= {control["json"], control["bytea"]}
    handler.flush()
    log = log_path.read_bytes()
    assert b"INSERT INTO case_file" in log, "SQLAlchemy statements were not captured"
    check(log, "app-log")
    assert control["log"] in found_controls["app-log"]

    assert hits == [], describe(hits)
    print(f"T3: {len(cn.issued)} canaries in {len(columns)} columns, {scanner.pattern_count} byte patterns, "
          f"log {len(log)} bytes: 0 hits")


def test_the_search_finds_every_form_anywhere():
    """The scanner itself: each form of each canary planted at a random offset in random bytes is found."""
    import os
    import random

    from support_security import forms

    cn = Canaries("S")
    cans = [cn.text("x.y"), cn.name("x.y"), cn.phone("x.y"), cn.id_number("x.y"), cn.student_number("x.y")]
    scanner = Scanner(cans)
    rng = random.Random(3)
    for c in cans:
        for form, pattern in forms(c):
            noise = bytearray(os.urandom(4096))
            at = rng.randrange(0, len(noise) - len(pattern))
            noise[at:at + len(pattern)] = pattern
            hits = scanner.scan(bytes(noise), "noise")
            assert (c, form, at) in {(h.canary, h.form, h.offset) for h in hits}
    assert scanner.scan(os.urandom(1 << 20), "noise") == []
    import base64 as b64
    for k in range(3):  # base64 of a longer value that contains the canary somewhere inside
        blob = b64.b64encode(os.urandom(k + 7) + cans[0].encode() + os.urandom(5))
        assert scanner.scan(blob, "b64"), k
