"""Imports killed midway (security test T24 a; issue 4: "a crash mid-job leaves no half-written state
and resumes"). A real process runs the roster import and the paper import and is SIGKILLed at named
points — after the analysis, in the middle of the bulk write, just before COMMIT — and each time
nothing of the file is in the database afterwards (the database recovers the dead transaction:
SQLite's WAL, PostgreSQL's backend rollback). Killed just after COMMIT, everything is there; the next
run then imports nothing twice (the roster again changes nothing; the paper file again is refused).
The kill points are injected in the child process (module attributes wrapped before the import
runs), so each lands where it is named on every run; the services, engine and database are real."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from mh_platform.db.models import Enrolment, Flag, Guardian, Response, Student

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from screening_world import build_world, roster_rows, to_csv  # noqa: E402

STUDENTS = 600
CRITICAL_EVERY = 10  # every 10th student answers PHQ-9 item 9 "1": a red flag (the flag path is in the transaction)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _child(url: str, key: str, user_id: str, kind: str, point: str, data: bytes, campaign_id: str | None) -> None:
    """Run one import in this (spawned) process and SIGKILL it at ``point``."""
    from mh_platform.config import load_settings
    from mh_platform.db import bulk
    from mh_platform.db.models import User
    from mh_platform.services import auth, paper_import, roster
    from mh_platform.services.context import UnitOfWork, build_context
    from mh_platform.services.keys import bootstrap_keys

    ctx = build_context(load_settings({"env": "test", "database_url": url, "master_key_file": key,
                                       "secret_key": "t" * 40}, environ={}))
    bootstrap_keys(ctx)
    with ctx.uow() as uow:
        actor = auth.actor_for_user(uow.session, uow.session.get(User, uuid.UUID(user_id)))
    svc = roster if kind == "roster" else paper_import
    armed = [False]

    real_analyse = svc._analyse

    def analyse(*a, **k):
        out = real_analyse(*a, **k)
        if point == "analysed":
            _die()
        return out

    svc._analyse = analyse
    real_commit = UnitOfWork.commit

    def commit(self):
        if armed[0] and point == "before_commit":
            _die()
        return real_commit(self)

    UnitOfWork.commit = commit
    if point == "mid_write" and kind == "roster":
        # the students are inserted; the transaction dies as the enrolments begin
        @sa.event.listens_for(ctx.engine, "before_cursor_execute")
        def _on_sql(conn, cursor, statement, *rest):
            if armed[0] and statement.lstrip().upper().startswith("INSERT INTO ENROLMENT"):
                _die()
    if point == "mid_write" and kind == "paper":
        real_write = bulk.BulkInsert.write

        def write(self, rows, *, count=None):
            if self.table.name != "response":
                return real_write(self, rows, count=count)
            half = (count or 2) // 2

            def dying():
                for i, r in enumerate(rows):
                    if i == half:  # half the responses are with the database, inside the statement
                        _die()
                    yield r
            return real_write(self, dying(), count=count)

        bulk.BulkInsert.write = write
    armed[0] = True
    if kind == "roster":
        roster.commit(ctx, actor, data, "roster.csv")
    else:
        paper_import.commit(ctx, actor, data, "paper.csv", uuid.UUID(campaign_id))
    if point == "after_commit":
        _die()
    os._exit(3)  # a point that was never reached


def _run_killed(ctx, user_id, kind: str, point: str, data: bytes, campaign_id=None) -> None:
    p = mp.get_context("spawn").Process(target=_child, args=(ctx.settings.database_url, ctx.settings.master_key_file,
                                                              str(user_id), kind, point, data,
                                                              str(campaign_id) if campaign_id else None))
    p.start()
    p.join(180)
    assert p.exitcode == -signal.SIGKILL, f"{kind} {point}: exit code {p.exitcode} (3: the point was never reached)"


def _count(ctx, model, *where) -> int:
    with ctx.uow() as uow:
        return uow.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where)) or 0


@pytest.fixture
def city(fresh_ctx):
    return fresh_ctx, build_world(fresh_ctx)


def test_a_roster_import_killed_anywhere_leaves_nothing_and_resumes_exactly_once(city):
    from mh_platform.services import roster

    ctx, world = city
    data = to_csv(roster_rows(classes=STUDENTS // 50, per_class=50))
    for point in ("analysed", "mid_write", "before_commit"):
        _run_killed(ctx, world.counsellor.user_id, "roster", point, data)
        assert [_count(ctx, m) for m in (Student, Enrolment, Guardian)] == [0, 0, 0], point
    _run_killed(ctx, world.counsellor.user_id, "roster", "after_commit", data)
    assert [_count(ctx, m) for m in (Student, Enrolment, Guardian)] == [STUDENTS] * 3
    again = roster.commit(ctx, world.counsellor, data, "roster.csv")  # the same file again: nothing new or changed
    assert (again.new, again.changed) == (0, 0)
    assert _count(ctx, Student) == STUDENTS


def test_a_paper_import_killed_anywhere_leaves_no_answer_and_no_flag_and_resumes_exactly_once(city):
    from mh_platform.core.errors import ValidationFailed
    from mh_platform.services import campaigns, consent, paper_import, roster

    ctx, world = city
    roster.commit(ctx, world.counsellor, to_csv(roster_rows(classes=STUDENTS // 50, per_class=50)), "roster.csv")
    with ctx.uow() as uow:
        ids = list(uow.session.scalars(sa.select(Enrolment.student_id)))
    consent.record_many(ctx, world.counsellor, [consent.ConsentIn(sid, "granted") for sid in ids])
    now = ctx.now()
    cid = campaigns.create(ctx, world.counsellor, name="普测", unit_ids=[world.school.id], grades=[7],
                           opens_at=now - timedelta(minutes=1), closes_at=now + timedelta(days=3))
    campaigns.open_due(ctx, now)
    lines = ["学籍号,量表," + ",".join(str(n) for n in range(1, 10))]
    for k, row in enumerate(roster_rows(classes=STUDENTS // 50, per_class=50)):
        lines.append(f"{row[3]},phq9," + ",".join(["1"] * 8 + ["1" if k % CRITICAL_EVERY == 0 else "0"]))
    data = ("\n".join(lines) + "\n").encode("utf-8")
    flagged = len(range(0, STUDENTS, CRITICAL_EVERY))
    for point in ("analysed", "mid_write", "before_commit"):
        _run_killed(ctx, world.counsellor.user_id, "paper", point, data, cid)
        assert (_count(ctx, Response, Response.campaign_id == cid), _count(ctx, Flag)) == (0, 0), point
    _run_killed(ctx, world.counsellor.user_id, "paper", "after_commit", data, cid)
    assert _count(ctx, Response, Response.campaign_id == cid, Response.source == "paper",
                  Response.status == "submitted") == STUDENTS
    assert _count(ctx, Flag) == flagged
    with pytest.raises(ValidationFailed):  # the same file again: every row is already answered
        paper_import.commit(ctx, world.counsellor, data, "paper.csv", cid)
    assert (_count(ctx, Response, Response.campaign_id == cid), _count(ctx, Flag)) == (STUDENTS, flagged)
