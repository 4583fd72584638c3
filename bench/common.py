"""Shared helpers for `make bench`: every result is a ratio against a baseline measured in the same run."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any


def result(name: str, unit: str, value: float, baseline: float, target: float,
           higher_is_better: bool = True, **extra: Any) -> dict:
    """One row of bench/results.json.

    ``ratio`` is value/baseline; ``passed`` compares it with ``target`` (a minimum ratio when
    higher is better, a maximum ratio otherwise).
    """
    ratio = value / baseline if baseline else float("inf")
    passed = ratio >= target if higher_is_better else ratio <= target
    row = {"name": name, "unit": unit, "value": round(value, 6), "baseline": round(baseline, 6),
           "ratio": round(ratio, 4), "target": target, "passed": bool(passed)}
    row.update(extra)
    return row


def absolute(name: str, unit: str, value: float, limit: float, higher_is_better: bool = False,
             **extra: Any) -> dict:
    """A row whose goal is an absolute limit (e.g. seconds per sweep): baseline is the limit."""
    return result(name, unit, value, limit, 1.0, higher_is_better=higher_is_better, **extra)


def median_time(fn: Callable[[], Any], repeat: int = 5) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def seed_open_campaign(ctx: Any, n_students: int, *, per_class: int = 50, prefix: str = "b",
                       number_prefix: str = "G") -> tuple:
    """A city, county and junior school with ``n_students`` in grade 7 (classes of ``per_class``,
    consent granted, student numbers ``<number_prefix>2100<8 digits>``), a counsellor
    ``<prefix>.counsellor`` and a campaign open now; returns (counsellor actor, campaign id)."""
    import uuid
    from datetime import date, timedelta

    import sqlalchemy as sa

    from mh_platform.core.types import Role, UnitKind
    from mh_platform.db.models import Consent, Student
    from mh_platform.services import auth, campaigns, students
    from mh_platform.services.context import SYSTEM
    from mh_platform.services.org import add_unit

    now = ctx.now()
    with ctx.uow() as uow:
        s = uow.session
        city = add_unit(s, kind=UnitKind.CITY, name="盘锦市", code=f"{prefix}-city", parent=None, now=now)
        county = add_unit(s, kind=UnitKind.COUNTY, name="兴隆台区", code=f"{prefix}-c", parent=city, now=now)
        school = add_unit(s, kind=UnitKind.SCHOOL, name="一中", code=f"{prefix}-s", parent=county, now=now, stage="junior")
        grade = add_unit(s, kind=UnitKind.GRADE, name="七年级", code=f"{prefix}-g7", parent=school, now=now, grade_level=7)
        year = students.ensure_academic_year(s, "2026-2027", date(2026, 9, 1), date(2027, 7, 15))
        classes = [add_unit(s, kind=UnitKind.CLASS, name=f"七年级{k + 1}班", code=f"{prefix}-c{k}", parent=grade, now=now,
                            grade_level=7) for k in range((n_students + per_class - 1) // per_class)]
        s.flush()
        for i in range(0, n_students, 2000):
            items = [students.StudentIn(name=f"学生{k}", sex="F" if k % 2 else "M", birth_year=2013,
                                        class_unit=classes[k // per_class], student_number=f"{number_prefix}2100{k:08d}")
                     for k in range(i, min(n_students, i + 2000))]
            students.add_students_bulk(ctx, s, items, year, now)
        ids = list(s.scalars(sa.select(Student.id)))
        s.execute(sa.insert(Consent), [{"id": uuid.uuid4(), "student_id": sid, "academic_year_id": year.id,
                                        "status": "granted", "method": "paper", "decided_on": now.date(),
                                        "recorded_by": None, "recorded_at": now, "withdrawn_at": None} for sid in ids])
        uow.commit()
    uid = auth.create_user(ctx, SYSTEM, username=f"{prefix}.counsellor", password="correct horse 1",  # noqa: S106
                           role=Role.COUNSELLOR,
                           unit_id=school.id)
    from mh_platform.db.models import User

    with ctx.uow() as uow:
        actor = auth.actor_for_user(uow.session, uow.session.get(User, uid))
    cid = campaigns.create(ctx, actor, name="bench", unit_ids=[school.id], grades=[7],
                           opens_at=now - timedelta(minutes=5), closes_at=now + timedelta(days=2))
    campaigns.open_due(ctx, now)
    return actor, cid


def create_pg_database(url: str, prefix: str, *, template: str | None = None) -> str:
    """A new database ``<prefix>_<random>`` (or a copy of ``template``) on the server ``url``
    names; returns its URL. The database ``url`` itself names is never touched."""
    import contextlib

    import sqlalchemy as sa

    from mh_platform.db.engine import normalise_url

    base = normalise_url(url).rsplit("/", 1)[0]
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
            if template:  # the copy's pages written now, not during the measurement (needs superuser or
                with contextlib.suppress(sa.exc.DBAPIError):  # pg_checkpoint: best effort)
                    c.exec_driver_sql("CHECKPOINT")
    finally:
        admin.dispose()
    return f"{base}/{name}"


def drop_pg_database(url: str) -> None:
    """Drop the database ``url`` names (connections to it are ended)."""
    import sqlalchemy as sa

    base, name = url.rsplit("/", 1)
    admin = sa.create_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
