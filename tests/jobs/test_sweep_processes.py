"""The sweep with real processes: exactly-once escalation with two schedulers, one SIGKILLed mid-sweep,
exactly-once delivery with two racing senders (real SMTP), and the CLI's output shape."""

from __future__ import annotations

import email
import json
import pathlib
import random
import signal
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from flags_world import build_world, light_hashes  # noqa: E402
from procs_helpers import MHP, Proc, mhp_env, run_mhp  # noqa: E402

from mh_platform.db.engine import normalise_url  # noqa: E402
from mh_platform.db.models import Enrolment, Flag, FlagEvent, InboxMessage, Outbox, Student  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _quick(monkeypatch):
    light_hashes(monkeypatch)


class Collector:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.bodies: list[str] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        m = email.message_from_bytes(envelope.content)
        self.ids.append(m["Message-ID"])
        self.bodies.append(m.get_payload(decode=True).decode())
        return "250 OK"


@pytest.fixture
def smtp():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    h = Collector()
    ctl = Controller(h, hostname="127.0.0.1", port=port)
    ctl.start()
    h.port = port
    yield h
    ctl.stop()


def _reader(url: str) -> sa.Engine:
    # a plain engine: reads here never take SQLite's write lock
    return sa.create_engine(normalise_url(url))


def _insert_flags(ctx, student_ids: list[uuid.UUID], now: datetime, due_in: list[float]) -> list[uuid.UUID]:
    """Open school-tier flags (raised), one per student, acknowledge deadline ``now + due_in[i]`` seconds."""
    rng = random.Random(7)
    with ctx.uow() as uow:
        s = uow.session
        rows, ids = [], []
        enrol = {e.student_id: e for e in s.execute(sa.select(
            Enrolment.student_id, Enrolment.class_unit_id, Enrolment.school_unit_id, Enrolment.unit_path)).all()}
        for sid, d in zip(student_ids, due_in, strict=True):
            e = enrol[sid]
            level = rng.choice(["red", "orange", "yellow"])
            fid = uuid.uuid4()
            ids.append(fid)
            ack = now + timedelta(seconds=d)
            rows.append({"id": fid, "student_id": sid, "school_unit_id": e.school_unit_id,
                         "class_unit_id": e.class_unit_id, "unit_path": e.unit_path,
                         "level": level, "tier": "school", "status": "raised", "is_watch": False,
                         "opened_at": now - timedelta(hours=2), "tier_entered_at": now - timedelta(hours=2),
                         "ack_due_at": ack, "handle_due_at": ack + timedelta(hours=20), "escalations": 0,
                         "county_informed_at": now - timedelta(hours=2), "version": 1})
        s.execute(sa.insert(Flag), rows)
        uow.commit()
    return ids


def _escalation_events(eng: sa.Engine, reason: str = "missed_%") -> Counter:
    """Escalation and reminder events per flag for a missed deadline (``reason``), or for nobody to
    tell at the new tier (``"no_recipient"``: a yellow reminder in the world's school without a
    counsellor is handed up to the county in the same transaction as the step)."""
    with eng.connect() as c:
        rows = c.execute(sa.select(FlagEvent.flag_id).where(
            FlagEvent.kind.in_(("flag:escalated", "flag:reminded")),
            FlagEvent.reason_code.like(reason))).scalars().all()
    return Counter(str(uuid.UUID(str(r))) for r in rows)


def test_two_schedulers_one_killed_mid_sweep_escalate_each_due_flag_exactly_once(
        fresh_ctx, fresh_db_url, master_key_file, tmp_path, smtp):
    w = build_world(fresh_ctx, n=250, prefix="p")
    with fresh_ctx.uow() as uow:
        students = [sid for (sid,) in uow.session.execute(sa.select(Student.id)).all()]
    assert len(students) == 1000
    now = datetime.now(UTC)
    rng = random.Random(11)
    # 900 flags overdue by up to an hour, 100 falling due 5–10 s after the schedulers start
    due_in = [-rng.uniform(1, 3600) for _ in range(900)] + [rng.uniform(5, 10) for _ in range(100)]
    flag_ids = _insert_flags(fresh_ctx, students, now, due_in)
    env = mhp_env(fresh_db_url, master_key_file, MHP_SMTP_PORT=str(smtp.port))
    args = ["scheduler", "run", "--only", "escalation_sweep", "--tick", "1", "--retry", "0.2", "--heartbeat", "0.5"]
    p1 = Proc(args, env, tmp_path / "s1.log")
    p2 = Proc(args, env, tmp_path / "s2.log")
    eng = _reader(fresh_db_url)
    try:
        deadline = time.monotonic() + 120
        killed = None
        seen_mid = 0
        while time.monotonic() < deadline:
            n = sum(_escalation_events(eng).values())
            if killed is None and 0 < n < 900:
                leaders = [p for p in (p1, p2) if '"scheduler": "leader"' in p.text()]
                assert len(leaders) == 1, "exactly one leader"
                killed = leaders[0]
                killed.p.send_signal(signal.SIGKILL)
                killed.p.wait(10)
                seen_mid = n
            if killed is not None and n >= 1000:
                break
            time.sleep(0.02)
        survivor = p2 if killed is p1 else p1
        assert killed is not None, "the leader finished before it could be killed mid-sweep"
        assert 0 < seen_mid < 900
        assert survivor.wait_for('"scheduler": "leader"', 30), survivor.text()
        counts = _escalation_events(eng)
        assert sum(counts.values()) == 1000, (sum(counts.values()), survivor.text()[-2000:])
        assert set(counts) == {str(f) for f in flag_ids}
        assert max(counts.values()) == 1  # exactly once per missed deadline
        handed_up = _escalation_events(eng, "no_recipient")
        assert handed_up and max(handed_up.values()) == 1  # and at most one hand-up, with its step
        with eng.connect() as c:
            tiers = [(str(uuid.UUID(str(i))), lv, t) for i, lv, t in c.execute(sa.select(Flag.id, Flag.level, Flag.tier))]
            dup = [k for (k,) in c.execute(sa.select(Outbox.dedupe_key).where(Outbox.dedupe_key.like("%:esc2:%")))
                   if k.split(":")[1] not in handed_up]  # a hand-up is the flag's second escalation
        assert dup == []
        assert all(t == "county" for (_i, lv, t) in tiers if lv in ("red", "orange"))
        # a yellow reminder at the ceiling stays at the school, unless nobody is there to act on it
        assert all(t == ("county" if i in handed_up else "school") for (i, lv, t) in tiers if lv == "yellow")
        assert {lv for (i, lv, _t) in tiers if i in handed_up} == {"yellow"}
        assert survivor.stop(signal.SIGTERM) == 0
    finally:
        p1.stop(9)
        p2.stop(9)

    # two senders race over the outbox: each message is delivered exactly once
    s1 = Proc(["notify", "send-pending", "--limit", "100000"], env, tmp_path / "n1.log")
    s2 = Proc(["notify", "send-pending", "--limit", "100000"], env, tmp_path / "n2.log")
    assert s1.p.wait(300) == 0 and s2.p.wait(300) == 0, (s1.text(), s2.text())
    r1, r2 = (json.loads(x.text().strip().splitlines()[-1]) for x in (s1, s2))
    s1.stop()
    s2.stop()
    with eng.connect() as c:
        rows = c.execute(sa.select(Outbox.id, Outbox.channel, Outbox.status)).all()
        inbox = c.execute(sa.select(sa.func.count()).select_from(InboxMessage)).scalar()
    eng.dispose()
    assert rows and all(st == "sent" for _, _, st in rows)
    assert r1["sent"] + r2["sent"] == len(rows)
    emails = {f"<{uuid.UUID(str(i))}@mhp.outbox>" for i, ch, _ in rows if ch == "email"}
    assert Counter(smtp.ids).most_common(1)[0][1] == 1
    assert set(smtp.ids) == emails
    assert inbox == sum(1 for _, ch, _ in rows if ch == "inbox")
    assert not any("学生p" in b for b in smtp.bodies)
    assert w.actors["county"].user_id is not None


def test_two_concurrent_cli_sweeps_never_double_escalate(fresh_ctx, fresh_db_url, master_key_file, tmp_path):
    build_world(fresh_ctx, n=50, prefix="q")
    with fresh_ctx.uow() as uow:
        students = [sid for (sid,) in uow.session.execute(sa.select(Student.id)).all()]
    now = datetime.now(UTC)
    flag_ids = _insert_flags(fresh_ctx, students, now, [-(i + 1.0) for i in range(len(students))])
    env = mhp_env(fresh_db_url, master_key_file)
    procs = [Proc(["escalation", "sweep"], env, tmp_path / f"c{i}.log") for i in range(2)]
    outs = []
    for p in procs:
        assert p.p.wait(300) == 0, p.text()
        outs.append(json.loads(p.text().strip().splitlines()[-1]))
        p.stop()
    escalated = [e["flag"] for o in outs for e in o["escalated"]]
    assert len(escalated) == len(set(escalated))  # no flag escalated by both
    eng = _reader(fresh_db_url)
    counts = _escalation_events(eng)
    handed_up = _escalation_events(eng, "no_recipient")
    eng.dispose()
    assert set(counts) == {str(f) for f in flag_ids} and max(counts.values()) == 1
    assert handed_up and max(handed_up.values()) == 1


def test_cli_sweep_now_prints_the_summary_shape(fresh_ctx, fresh_db_url, master_key_file):
    build_world(fresh_ctx, n=2, prefix="r")
    with fresh_ctx.uow() as uow:
        sid = uow.session.execute(sa.select(Student.id)).first()[0]
    t0 = datetime(2026, 9, 14, 8, 0, tzinfo=UTC)
    [fid] = _insert_flags(fresh_ctx, [sid], t0, [3600.0])
    with fresh_ctx.uow() as uow:
        level = uow.session.get(Flag, fid).level
    before = run_mhp(["escalation", "sweep", "--now", "2026-09-14T08:59:00Z"], fresh_db_url, master_key_file)
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout) == {"checked": 0, "escalated": []}
    after = run_mhp(["escalation", "sweep", "--now", "2026-09-14T09:00:00+00:00"], fresh_db_url, master_key_file)
    out = json.loads(after.stdout)
    assert set(out) == {"checked", "escalated"} and out["checked"] == 1
    if level == "yellow":
        assert out["escalated"] == []  # yellow stays at the school: a reminder, not an escalation
    else:
        assert out["escalated"] == [{"flag": str(fid), "from_tier": "school", "to_tier": "county", "level": level}]
    again = run_mhp(["escalation", "sweep", "--now", "2026-09-14T09:00:00Z"], fresh_db_url, master_key_file)
    assert json.loads(again.stdout) == {"checked": 0, "escalated": []}
    bad = run_mhp(["escalation", "sweep", "--now", "yesterday"], fresh_db_url, master_key_file)
    assert bad.returncode != 0 and "ISO-8601" in bad.stderr and "Traceback" not in bad.stderr
    assert MHP.endswith("mhp")
