"""Demo hook for flags: given the seeded city (``services.demo``), give every role's queue real work.

- each demo class: concerns from its psychology monitor (class tier, one of them overdue) and one
  from its head teacher (school tier);
- each demo school: screening-style flags at every level, some overdue, some acknowledged,
  assessed or being monitored by the counsellor;
- flags that the sweep moved to the county, and one red flag that reached the city;
- a cluster of orange/red flags in one class (a cluster alert with the suggested re-screening);
- a sprinkle of flags across the other schools for the county and city views.

Everything goes through the services (with the clock set back where a flag must be older), so the
events, the audit chain and the outbox are what real use would produce.
"""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mh_platform.core.clock import FixedClock
from mh_platform.core.flag_rules import Evidence, EvidenceSource
from mh_platform.core.types import Level
from mh_platform.db.models import Enrolment, Flag, User
from mh_platform.services import auth, concerns, escalation, flags
from mh_platform.services.context import SYSTEM, Actor, ServiceContext

BANDS = {Level.RED: "severe", Level.ORANGE: "moderately_severe", Level.YELLOW: "moderate"}


def _actor(ctx: ServiceContext, username: str) -> Actor | None:
    with ctx.uow() as uow:
        user = uow.session.scalar(sa.select(User).where(User.username == username))
        return auth.actor_for_user(uow.session, user) if user else None


def _class_students(ctx: ServiceContext, class_id: uuid.UUID) -> list[uuid.UUID]:
    with ctx.uow() as uow:
        return list(uow.session.scalars(sa.select(Enrolment.student_id).where(
            Enrolment.class_unit_id == class_id, Enrolment.active.is_(True)).order_by(Enrolment.student_id)))


def _at(ctx: ServiceContext, when: datetime) -> None:
    ctx.clock = FixedClock(when)


def _screening_flag(ctx: ServiceContext, student_id: uuid.UUID, level: Level) -> uuid.UUID:
    ev = Evidence(EvidenceSource.BAND, level, f"band:phq9:{BANDS[level]}",
                  {"instrument": "phq9", "band": BANDS[level], "total": {"red": 22, "orange": 17, "yellow": 12}[level]})
    with ctx.uow() as uow:
        out = flags.open_or_attach_in(uow.session, ctx, SYSTEM, student_id=student_id, evidence=[ev], now=ctx.now())
        uow.commit()
    assert out is not None
    return out.flag_id


def seed(ctx: ServiceContext, rng: random.Random, now: datetime, demo: Any) -> dict[str, int]:
    original = ctx.clock
    made = 0
    try:
        for stage in ("primary", "junior", "senior"):
            head, monitor = _actor(ctx, f"teacher.{stage}"), _actor(ctx, f"monitor.{stage}")
            counsellor = _actor(ctx, f"counsellor.{stage}")
            if head is None or monitor is None or counsellor is None:
                continue
            pupils = [s for s in _class_students(ctx, head.unit_id) if s != monitor.student_id]  # type: ignore[arg-type]
            if len(pupils) < 8:
                continue
            rng.shuffle(pupils)
            # the monitor's concerns: one fresh, one overdue at the class tier
            _at(ctx, now - timedelta(hours=30))
            concerns.submit_concern(ctx, monitor, student_id=pupils[0], category="withdrawal", urgency="soon",
                                    note="最近总是一个人，午饭也不去吃")
            _at(ctx, now - timedelta(hours=2))
            concerns.submit_concern(ctx, monitor, student_id=pupils[1], category="mood", urgency="routine",
                                    note="上课经常发呆，情绪低落")
            # the head teacher's concern starts at the school (red: the county sees it at once)
            _at(ctx, now - timedelta(minutes=20))
            concerns.submit_concern(ctx, head, student_id=pupils[2], category="self_harm", urgency="immediate",
                                    note="作业本上写了想消失的话")
            # screening flags at every level; one acknowledged, one assessed, one being monitored
            _at(ctx, now - timedelta(hours=30))
            overdue_orange = _screening_flag(ctx, pupils[3], Level.ORANGE)
            _at(ctx, now - timedelta(hours=10))
            yellow = _screening_flag(ctx, pupils[4], Level.YELLOW)
            _at(ctx, now - timedelta(hours=6))
            acked = _screening_flag(ctx, pupils[5], Level.ORANGE)
            _at(ctx, now - timedelta(hours=5))
            flags.acknowledge(ctx, counsellor, acked)
            _at(ctx, now - timedelta(days=6))
            monitored = _screening_flag(ctx, pupils[6], Level.YELLOW)
            _at(ctx, now - timedelta(days=5, hours=20))
            flags.acknowledge(ctx, counsellor, monitored)
            flags.assess(ctx, counsellor, monitored, "confirm")
            flags.start_monitoring(ctx, counsellor, monitored)
            made += 8
            del overdue_orange, yellow
        # escalated flags: a red flag left alone moves school → county (and one further to the city)
        others = [s for s in demo.student_ids]
        rng.shuffle(others)
        pool = iter(others)

        def fresh() -> uuid.UUID:
            while True:
                sid = next(pool)
                with ctx.uow() as uow:
                    if uow.session.scalar(sa.select(Flag.id).where(Flag.student_id == sid)) is None:
                        return sid

        _at(ctx, now - timedelta(hours=3))
        for _ in range(3):
            _screening_flag(ctx, fresh(), Level.RED)
        _at(ctx, now - timedelta(hours=53))
        city_flag = _screening_flag(ctx, fresh(), Level.RED)
        _at(ctx, now - timedelta(hours=51))
        for _ in range(4):
            _screening_flag(ctx, fresh(), Level.ORANGE)
        # a sprinkle across the city over the last ten days
        for _ in range(40):
            _at(ctx, now - timedelta(hours=rng.uniform(1, 240)))
            _screening_flag(ctx, fresh(), rng.choice([Level.RED, Level.ORANGE, Level.YELLOW, Level.YELLOW]))
        # the sweeps that would have run: at these past instants
        for hours_ago in (51.5, 50.2, 26.0, 1.5):
            _at(ctx, now - timedelta(hours=hours_ago))
            escalation.sweep(ctx, ctx.now())
        made += 51
        # a cluster in one class: three orange/red flags within two weeks
        cls = rng.choice(demo.classes)
        kids = _class_students(ctx, cls.id)
        free = []
        with ctx.uow() as uow:
            for sid in kids:
                if uow.session.scalar(sa.select(Flag.id).where(Flag.student_id == sid)) is None:
                    free.append(sid)
        for i, sid in enumerate(free[:3]):
            _at(ctx, now - timedelta(days=4 - i, hours=1))
            _screening_flag(ctx, sid, Level.ORANGE if i else Level.RED)
            made += 1
        del city_flag
    finally:
        ctx.clock = original
    return {"flags": made}
