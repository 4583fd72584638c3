"""Ciphertext at rest for the case area: unique canary strings written through the services into every
encrypted column of the case tables are found nowhere in the database file, its WAL (SQLite) or a
``pg_dump`` (PostgreSQL), nor in the logs — in UTF-8, UTF-16LE, hex or base64 (three alignments).
The people allowed to read them still read them back exactly."""

from __future__ import annotations

import base64
import logging
import os
import pathlib
import shutil
import subprocess
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa
from cases_world import build, confirmed_flag, quick_argon2  # noqa: F401 - autouse fixture

from mh_platform.db import cases as case_models
from mh_platform.db.base import Envelope
from mh_platform.db.models import AcademicYear, Student
from mh_platform.services import breakglass, cases, referrals, students, transfers

CASE_TABLES = [m.__table__ for m in (case_models.Case, case_models.PlanItem, case_models.FollowUp,
                                    case_models.GuardianContact, case_models.Referral, case_models.ReferralEvent,
                                    case_models.BreakGlass, case_models.Transfer)]
N_STUDENTS = 12


def _forms(text: str) -> list[bytes]:
    raw = text.encode("utf-8")
    out = [raw, text.encode("utf-16-le"), raw.hex().encode(), raw.hex().upper().encode()]
    for pad in range(3):  # base64 of the canary at each alignment inside a longer value
        enc = base64.b64encode(b"\0" * pad + raw + b"\0\0\0")
        skip = (pad * 4 + 2) // 3 + 1
        out.append(enc[skip:skip + (len(raw) * 4) // 3 - 4])
    return out


def test_canaries_never_reach_the_disk_in_clear(fresh_ctx, fresh_db_url, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    ctx = fresh_ctx
    w = build(ctx, n=N_STUDENTS + 1)
    c, one, two = w.actors["counsellor.a"], w.actors["clinician.one"], w.actors["clinician.two"]
    canaries: list[str] = []

    def k() -> str:
        value = f"CANARY-{uuid.uuid4().hex[:16]}-个案内容"
        canaries.append(value)
        return value

    expect: dict[str, str] = {}
    for i, sid in enumerate(w.students[:N_STUDENTS]):
        summary = k()
        cid = cases.open_case(ctx, c, confirmed_flag(ctx, sid, "red"), summary=summary)
        expect[str(cid)] = summary
        cases.add_plan_item(ctx, c, cid, goal=k(), action=k(), review_at=ctx.now() + timedelta(days=3))
        fu = cases.schedule_follow_up(ctx, c, cid, due_at=ctx.now())
        cases.complete_follow_up(ctx, c, fu, note=k())
        cases.log_guardian_contact(ctx, c, cid, method="phone", note=k())
        rid = referrals.create_referral(ctx, c, cid, institution_id=w.inst1, reason=k())
        referrals.transition(ctx, c, rid, "submit", consent="override", reason=k())
        referrals.transition(ctx, one, rid, "decline", decline_code="other", reason=k())
        referrals.transition(ctx, c, rid, "reroute", institution_id=w.inst2, reason=k())
        referrals.transition(ctx, two, rid, "accept")
        referrals.transition(ctx, two, rid, "schedule", appointment_at=ctx.now() + timedelta(hours=2))
        ctx.clock.advance(hours=3)  # the visit happens after its appointment time
        referrals.transition(ctx, two, rid, "record_attended")
        referrals.transition(ctx, two, rid, "record_feedback", diagnosis_category="depressive_episode",
                             recommendations=k(), return_advice=k())
        if i == 0:
            breakglass.open_break_glass(ctx, w.actors["county.a"], cid, reason=k())
        referrals.transition(ctx, c, rid, "start_follow_up", reentry_items=[
            {"goal": k(), "action": k(), "review_at": ctx.now() + timedelta(days=7)}])
        referrals.transition(ctx, c, rid, "close", reason=k())
        if i % 2:
            cases.close_case(ctx, c, cid, reason=k())
    # a handover note
    mover = w.students[N_STUDENTS]
    cid = cases.open_case(ctx, c, confirmed_flag(ctx, mover, "orange"), summary=k())
    with ctx.uow() as uow:
        s = uow.session
        year = s.scalar(sa.select(AcademicYear).where(AcademicYear.is_current.is_(True)))
        students.enrol(s, s.get(Student, mover), w.class_a2, year, ctx.now())
        uow.commit()
    transfers.request_transfer(ctx, c, cid, handover_note=k())
    assert len(canaries) >= 14 * N_STUDENTS and len(set(canaries)) == len(canaries)

    # every encrypted column of the case tables holds at least one value (nothing left untested)
    with ctx.uow() as uow:
        s = uow.session
        for table in CASE_TABLES:
            for col in table.columns:
                if isinstance(col.type, Envelope):
                    n = s.scalar(sa.select(sa.func.count()).select_from(table).where(col.is_not(None)))
                    assert n, f"{table.name}.{col.name} was never written"
    # the right people still read them exactly
    some = next(iter(expect))
    assert cases.case_detail(ctx, c, some)["summary"] == expect[some]

    blobs: list[tuple[str, bytes]] = []
    if fresh_db_url.startswith("sqlite"):
        ctx.engine.dispose()
        path = pathlib.Path(fresh_db_url.removeprefix("sqlite:///"))
        import sqlite3

        con = sqlite3.connect(path)
        con.execute("PRAGMA wal_checkpoint(FULL)")
        con.close()
        for p in (path, path.with_name(path.name + "-wal")):
            if p.exists():
                blobs.append((p.name, p.read_bytes()))
    else:
        pg_dump = shutil.which("pg_dump") or next(iter(sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin/pg_dump"))),
                                                   None)
        if pg_dump is None:
            pytest.skip("pg_dump not installed")
        url = sa.engine.make_url(fresh_db_url)
        dump = subprocess.run([str(pg_dump), "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432), "-U",
                               url.username or "postgres", "-d", url.database], capture_output=True, check=True,
                              timeout=300, env={**os.environ, "PGPASSWORD": url.password or ""})
        blobs.append(("pg_dump", dump.stdout))
    blobs.append(("logs", caplog.text.encode("utf-8")))
    assert sum(len(b) for _, b in blobs) > 100_000
    # positive control: plaintext columns (an institution's name, a pseudonym) ARE found by the same search
    with ctx.uow() as uow:
        pseudonym = uow.session.get(Student, w.students[0]).pseudonym
    assert any("盘锦市精神卫生中心".encode() in blob for _, blob in blobs)
    assert any(pseudonym.encode() in blob for _, blob in blobs)
    hits = [(name, c_) for c_ in canaries for form in _forms(c_) for name, blob in blobs if form in blob]
    assert hits == []
    # the diagnosis category is sealed too: it is nowhere in the clear (not a column, not an event, not audit)
    assert not any(b"depressive_episode" in blob for _, blob in blobs)
