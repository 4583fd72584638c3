"""`mhp audit verify` catches an edited, a deleted, a reordered and a truncated entry."""

import os
import subprocess
import sys

import pytest
import sqlalchemy as sa

from mh_platform.core.types import Role, UnitKind
from mh_platform.services import audit, auth
from mh_platform.services.context import SYSTEM
from mh_platform.services.org import add_unit


@pytest.fixture
def chain(fresh_ctx):
    ctx = fresh_ctx
    with ctx.uow() as uow:
        city = add_unit(uow.session, kind=UnitKind.CITY, name="市", code="c", parent=None, now=ctx.now())
        uow.commit()
    for i in range(4):
        auth.create_user(ctx, SYSTEM, username=f"user{i}", password="correct horse 1", role=Role.CITY_OFFICER,
                         unit_id=city.id)
    assert audit.sequence(ctx).chained >= 4  # the tamper cases below address chained entries by seq
    return ctx


def _verify(ctx) -> subprocess.CompletedProcess:
    env = dict(os.environ, MHP_DATABASE_URL=ctx.settings.database_url, MHP_MASTER_KEY_FILE="",
               MHP_ENV="test")
    env.pop("MHP_MASTER_KEY", None)
    env["MHP_MASTER_KEY_FILE"] = ctx.settings.master_key_file
    return subprocess.run([sys.executable, "-m", "mh_platform.cli", "audit", "verify"], env=env,
                          capture_output=True, text=True, timeout=60)


def _exec(ctx, sql: str, **params) -> None:
    with ctx.engine.begin() as c:
        c.execute(sa.text(sql), params)


def test_intact_chain_verifies(chain):
    res = _verify(chain)
    assert res.returncode == 0, res.stderr
    assert "ok" in res.stdout.lower()


def test_edited_entry_is_caught(chain):
    _exec(chain, "UPDATE event_log SET kind = 'user:deleted' WHERE seq = 3")
    res = _verify(chain)
    assert res.returncode == 1
    assert "seq 3" in res.stdout and "edited" in res.stdout


def test_deleted_entry_is_caught(chain):
    _exec(chain, "DELETE FROM event_log WHERE seq = 2")
    res = _verify(chain)
    assert res.returncode == 1 and "deleted" in res.stdout


def test_reordered_entries_are_caught(chain):
    _exec(chain, "UPDATE event_log SET seq = 1000 WHERE seq = 2")
    _exec(chain, "UPDATE event_log SET seq = 2 WHERE seq = 3")
    _exec(chain, "UPDATE event_log SET seq = 3 WHERE seq = 1000")
    res = _verify(chain)
    assert res.returncode == 1 and "BROKEN" in res.stdout


def test_truncated_tail_is_caught(chain):
    _exec(chain, "DELETE FROM event_log WHERE seq = (SELECT max(seq) FROM event_log)")
    res = _verify(chain)
    assert res.returncode == 1 and "truncated" in res.stdout


def _pending_event(ctx, kind: str = "test:pending") -> int:
    with ctx.uow() as uow:
        audit.record(ctx, uow.session, SYSTEM, kind, "thing", None, {"n": 1})
        uow.commit()
    with ctx.engine.connect() as c:
        return c.execute(sa.text("SELECT max(id) FROM event_log WHERE seq IS NULL")).scalar_one()


def test_entry_edited_before_sequencing_is_quarantined_not_chained(chain):
    rid = _pending_event(chain)
    _exec(chain, "UPDATE event_log SET kind = 'user:deleted' WHERE id = :i", i=rid)
    assert audit.verify(chain).ok is False  # read-only verify already sees the bad entry MAC
    res = _verify(chain)  # the CLI sequences first: the entry is quarantined, the rest chained
    assert res.returncode == 1 and f"ids [{rid}]" in res.stdout
    with chain.engine.connect() as c:
        assert c.execute(sa.text("SELECT seq FROM event_log WHERE id = :i"), {"i": rid}).scalar_one() == -rid
        rejected = c.execute(sa.text("SELECT count(*) FROM event_log WHERE kind = 'audit:entry_rejected' "
                                     "AND seq > 0")).scalar_one()
    assert rejected == 1  # the rejection itself is a chained event


def test_entry_forged_without_the_key_is_never_chained(chain):
    _exec(chain, "INSERT INTO event_log (at, kind, data, entry_mac) VALUES (:at, 'user:role_changed', '{}', :m)",
          at=chain.now(), m=b"\x00" * 32)
    res = _verify(chain)
    assert res.returncode == 1 and "rejected" in res.stdout
    with chain.engine.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM event_log WHERE kind = 'user:role_changed' AND seq > 0")
                         ).scalar_one() == 0


def test_pending_entries_verify_and_are_chained_by_the_cli(chain):
    _pending_event(chain)
    assert audit.verify(chain).pending == 1
    res = _verify(chain)
    assert res.returncode == 0, res.stdout + res.stderr
    assert audit.verify(chain).pending == 0
