"""What keeps the autosave cheap without changing what it does: its statements are compiled once per
process (SQLAlchemy's statement cache) and it runs on Core units of work (``ctx.core_uow``, no ORM
Session), yet it still writes the page as given, sealed, in one write transaction that rolls back on
an error, creates a student's first data key with the write, refuses a shredded key, and raises the
flag at once on a critical answer."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from screening_world import build_world, screening_ready
from sqlalchemy.sql import compiler

from mh_platform.core.instruments import load_instrument
from mh_platform.crypto import envelope as env
from mh_platform.db.models import DataKey, Flag, Response, Setting
from mh_platform.services import responses


def _stored(ctx, student_id, instrument: str) -> tuple[dict, dict]:
    """The page's opened answers and its other columns."""
    with ctx.uow() as uow:
        s = uow.session
        r = s.scalar(sa.select(Response).where(Response.student_id == student_id, Response.instrument_id == instrument))
        cols = {k: getattr(r, k) for k in ("n_answered", "item_ms", "status", "instrument_version", "source",
                                           "critical_fired")}
        return json.loads(ctx.keyring.open_field(s, r.answers_enc, table="response", column="answers_enc",
                                                 row_id=r.id)), cols


def test_the_first_answer_of_a_page_reuses_one_compiled_insert(ctx, monkeypatch):
    world = build_world(ctx)
    _cid, codes, _refused, _hts = screening_ready(ctx, world, per_class=3, refused=0)
    entered = [(sid, responses.begin(ctx, code).sitting) for sid, code in list(codes.items())[:3]]
    sid0, ac0 = entered[0]
    responses.save_answer(ctx, ac0, "phq9", 1, 1, item_ms=1200)  # compiles (and caches) once in this process
    compiled: list[str] = []
    init = compiler.SQLCompiler.__init__

    def counting(self, *a, **kw):  # noqa: ANN001, ANN002, ANN003
        init(self, *a, **kw)
        compiled.append(self.string)

    monkeypatch.setattr(compiler.SQLCompiler, "__init__", counting)
    for _sid, ac in entered[1:]:
        res = responses.save_answer(ctx, ac, "phq9", 2, 3, item_ms=900)
        assert res.n_answered == 1
    assert [sql for sql in compiled if sql.startswith("INSERT INTO response")] == []
    monkeypatch.setattr(compiler.SQLCompiler, "__init__", init)
    for sid, _ac in entered[1:]:
        answers, r = _stored(ctx, sid, "phq9")
        assert answers == {"2": 3}
        assert r == {"n_answered": 1, "item_ms": {"2": 900}, "status": "in_progress", "source": "online",
                     "instrument_version": load_instrument("phq9").version, "critical_fired": False}
    assert _stored(ctx, sid0, "phq9")[0] == {"1": 1}


def test_the_insert_names_every_column_the_plan_fills():
    assert set(responses._INSERT_COLUMNS) <= {c.name for c in responses._RESP.c}
    assert len(set(responses._INSERT_COLUMNS)) == len(responses._INSERT_COLUMNS)


def _entered(ctx, n: int = 1) -> list[tuple]:
    world = build_world(ctx)
    _cid, codes, _refused, _hts = screening_ready(ctx, world, per_class=max(n, 2), refused=0)
    return [(sid, responses.begin(ctx, code).sitting) for sid, code in list(codes.items())[:n]]


def _count_commits(ctx, monkeypatch) -> list[int]:
    commits = [0]
    dialect = ctx.engine.dialect
    do_commit = dialect.do_commit

    def counting(dbc):  # noqa: ANN001
        commits[0] += 1
        do_commit(dbc)

    monkeypatch.setattr(dialect, "do_commit", counting)
    return commits


def test_an_autosave_commits_one_transaction_and_rolls_back_on_an_error(fresh_ctx, monkeypatch):
    ctx = fresh_ctx
    (sid, ac), = _entered(ctx)
    commits = _count_commits(ctx, monkeypatch)
    responses.save_answer(ctx, ac, "phq9", 1, 2, item_ms=800)  # the page's first answer: the insert
    responses.save_answer(ctx, ac, "phq9", 2, 1)  # then the compare-and-swap update
    assert commits[0] == 2
    assert _stored(ctx, sid, "phq9")[0] == {"1": 2, "2": 1}

    def broken(*_a, **_kw):  # noqa: ANN002, ANN003
        raise RuntimeError("flag path down")

    monkeypatch.setattr(responses, "flag_path", broken)
    crit = next(c for c in load_instrument("phq9").critical_items)
    before = commits[0]
    with pytest.raises(RuntimeError, match="flag path down"):
        responses.save_answer(ctx, ac, "phq9", crit.item, max(crit.levels))  # written, then the flag path fails
    assert commits[0] == before
    answers, cols = _stored(ctx, sid, "phq9")
    assert answers == {"1": 2, "2": 1} and cols["n_answered"] == 2 and cols["critical_fired"] is False


def test_a_critical_autosave_raises_the_flag_at_once(ctx):
    (sid, ac), = _entered(ctx)
    crit = next(c for c in load_instrument("phq9").critical_items)
    res = responses.save_answer(ctx, ac, "phq9", crit.item, max(crit.levels), item_ms=2000)
    assert res.critical and res.n_answered == 1
    with ctx.uow() as uow:
        flags = uow.session.scalars(sa.select(Flag).where(Flag.student_id == sid)).all()
        assert len(flags) == 1 and flags[0].status == "raised"
    answers, cols = _stored(ctx, sid, "phq9")
    assert answers == {str(crit.item): max(crit.levels)} and cols["critical_fired"] is True
    responses.save_answer(ctx, ac, "phq9", 1, 0)  # fired once per page: no second flag
    with ctx.uow() as uow:
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(Flag).where(Flag.student_id == sid)) == 1


def test_a_critical_item_that_fires_after_another_on_the_same_page_reaches_the_flag_at_once(ctx, monkeypatch):
    """ASQ: Q1 "yes" fires the page; Q5 "yes" (acute) saved later must reach the flag on its own save,
    not only at submit — the student may close the tab. Saves that fire nothing new skip the flag path."""
    from mh_platform.db.models import FlagEvidence

    (sid, ac), = _entered(ctx)
    calls: list[str] = []
    original = responses.flag_path
    monkeypatch.setattr(responses, "flag_path", lambda *a, **k: calls.append(k["trigger"]) or original(*a, **k))

    def evidence() -> set[str]:
        with ctx.uow() as uow:
            return set(uow.session.scalars(sa.select(FlagEvidence.reason_code).join(Flag, Flag.id == FlagEvidence.flag_id)
                                           .where(Flag.student_id == sid)))

    responses.save_answer(ctx, ac, "asq", 1, "yes")
    assert evidence() == {"critical:asq:1"} and len(calls) == 1
    responses.save_answer(ctx, ac, "asq", 2, "no")
    assert len(calls) == 1  # nothing new fired
    ctx.clock.advance(minutes=1)
    assert responses.save_answer(ctx, ac, "asq", 5, "yes").critical
    assert evidence() == {"critical:asq:1", "critical:asq:5"} and calls == ["critical_item", "critical_item"]
    responses.save_answer(ctx, ac, "asq", 3, "no")
    assert len(calls) == 2
    with ctx.uow() as uow:
        flags = uow.session.scalars(sa.select(Flag).where(Flag.student_id == sid)).all()
        assert [(f.level, f.status) for f in flags] == [("red", "raised")]


def test_a_student_without_a_data_key_gets_one_with_the_first_write(ctx):
    (sid, ac), = _entered(ctx)
    with ctx.uow() as uow:
        uow.session.execute(sa.delete(DataKey).where(DataKey.student_id == sid))
        uow.commit()
    assert responses.save_answer(ctx, ac, "gad7", 1, 2).n_answered == 1
    responses.save_answer(ctx, ac, "gad7", 2, 3)
    with ctx.uow() as uow:
        keys = uow.session.scalars(sa.select(DataKey).where(DataKey.student_id == sid)).all()
        assert len(keys) == 1 and keys[0].active and keys[0].wrapped is not None
    assert _stored(ctx, sid, "gad7")[0] == {"1": 2, "2": 3}
    assert responses.page(ctx, ac, "gad7").answers == {1: 2, 2: 3}


def test_a_shredded_key_refuses_the_autosave_and_writes_nothing(ctx):
    (sid, ac), = _entered(ctx)
    with ctx.uow() as uow:
        uow.session.execute(sa.update(DataKey).where(DataKey.student_id == sid)
                            .values(wrapped=None, active=False, destroyed_at=ctx.now()))
        uow.commit()
    with pytest.raises(env.KeyShredded):
        responses.save_answer(ctx, ac, "gad7", 1, 2)
    with ctx.uow() as uow:
        assert uow.session.scalar(sa.select(sa.func.count()).select_from(Response).where(
            Response.student_id == sid)) == 0


@pytest.mark.parametrize("harness", ["engine", "outer_transaction"])
def test_a_core_unit_of_work_commits_only_when_told(harness, request):
    """``ctx.core_uow``: rolled back unless committed, hooks after the commit, and a Session made on
    demand is flushed into the same transaction. On an engine (``fresh_ctx``) and, like the test
    harness's sessions, inside an outer transaction (``ctx``)."""
    ctx = request.getfixturevalue("fresh_ctx" if harness == "engine" else "ctx")
    table = Setting.__table__
    ran: list[str] = []

    def fail_before_commit() -> None:
        with ctx.core_uow() as uow:
            uow.connection.execute(table.insert(), {"key": "t.core.lost", "value": {}})
            uow.session.add(Setting(key="t.core.lost2", value={}))
            uow.after_commit(lambda: ran.append("lost"))
            raise RuntimeError("before the commit")

    with pytest.raises(RuntimeError):
        fail_before_commit()
    with ctx.core_uow() as uow:
        uow.connection.execute(table.insert(), {"key": "t.core.kept", "value": {"n": 1}})
        uow.session.add(Setting(key="t.core.kept2", value={"n": 2}))
        uow.after_commit(lambda: ran.append("kept"))
        assert ran == []
        uow.commit()
    assert ran == ["kept"]
    with ctx.core_uow(read_only=True) as uow:
        keys = set(uow.connection.execute(sa.select(table.c.key).where(table.c.key.like("t.core.%"))).scalars())
    assert keys == {"t.core.kept", "t.core.kept2"}


def test_a_page_submit_is_gated_like_the_autosave(ctx):
    """``submit`` reads its state with the autosave's one-query page read: the same refusals, and a
    refused submission writes nothing."""
    from mh_platform.core.errors import NotFound
    from mh_platform.db.models import AccessCode, Consent
    from mh_platform.services import consent

    world = build_world(ctx)
    _cid, codes, _refused, hts = screening_ready(ctx, world, per_class=6, refused=0)
    entered = [(sid, responses.begin(ctx, code).sitting) for sid, code in codes.items()]
    inst = load_instrument("phq9")
    page = {str(it.number): it.options[0].value for it in inst.items}
    (s_ok, ac_ok), (s_rev, ac_rev), (s_wd, ac_wd), (s_done, ac_done), (s_nc, ac_nc) = entered[:5]
    with ctx.uow() as uow:  # behind the services' back: the sittings stay, the gate alone must refuse
        uow.session.execute(sa.update(AccessCode).where(AccessCode.id == ac_rev.access_code_id)
                            .values(revoked_at=ctx.now()))
        uow.session.execute(sa.update(AccessCode).where(AccessCode.id == ac_done.access_code_id)
                            .values(completed_at=ctx.now()))
        uow.session.execute(sa.update(Consent).where(Consent.student_id == s_nc).values(status="withdrawn"))
        uow.commit()
    consent.withdraw(ctx, hts[0], s_wd)  # the service also ends the sitting: signed out
    for ac, reason in ((ac_rev, "invalid"), (ac_wd, "signed_out"), (ac_done, "completed"), (ac_nc, "no_consent")):
        with pytest.raises(responses.CodeRejected) as e:
            responses.submit(ctx, ac, "phq9", page)
        assert e.value.reason == reason
    with pytest.raises(NotFound):
        responses.submit(ctx, ac_ok, "scared", {"1": 0})
    out = responses.submit(ctx, ac_ok, "phq9", page, {"1": 2500})
    assert not out.finished and out.next_instrument == "gad7" and out.missing == 0
    ctx.clock.advance(days=30)  # past the window
    with pytest.raises(responses.CodeRejected) as e:
        responses.submit(ctx, ac_ok, "gad7", {"1": 0})
    assert e.value.reason == "closed"
    ctx.clock.advance(days=-30)
    with ctx.uow() as uow:
        rows = uow.session.execute(sa.select(Response.student_id, Response.instrument_id, Response.status)).all()
    assert rows == [(s_ok, "phq9", "submitted")]
    assert {s_rev, s_wd, s_done, s_nc}.isdisjoint({r[0] for r in rows})


@pytest.fixture
def sqlite_ctx(tmp_path, master_key_file, clock):
    """A context on its own migrated SQLite file, whatever database the suite runs on: the test below
    is about SQLite's transaction modes."""
    from mh_platform.config import load_settings
    from mh_platform.db import migrate
    from mh_platform.services.context import build_context
    from mh_platform.services.keys import bootstrap_keys

    url = f"sqlite:///{tmp_path / 'own.sqlite3'}"
    migrate.upgrade(url)
    context = build_context(load_settings({"env": "test", "database_url": url, "master_key_file": master_key_file,
                                           "secret_key": "t" * 40}, environ={}), clock=clock)
    bootstrap_keys(context)
    yield context
    context.engine.dispose()


def test_on_sqlite_an_autosave_reads_in_a_read_transaction_and_writes_one_statement(sqlite_ctx):
    """The write lock (BEGIN IMMEDIATE) is taken for the one write only; the read and sealing run in
    a plain BEGIN (``ctx.core_uow(read_only=True)``)."""
    ctx = sqlite_ctx
    (_sid, ac), = _entered(ctx)
    ctx.engine.dispose()  # new connections, traced
    sent: list[str] = []

    @sa.event.listens_for(ctx.engine, "connect")
    def _trace(dbc, _rec):  # noqa: ANN001
        dbc.set_trace_callback(lambda sql: sent.append(sql.split()[0] + (" IMMEDIATE" if "IMMEDIATE" in sql else "")))

    responses.save_answer(ctx, ac, "phq9", 1, 1)
    responses.save_answer(ctx, ac, "phq9", 2, 1)
    sent = [x for x in sent if x != "PRAGMA"]
    one = ["BEGIN", "SELECT", "ROLLBACK", "BEGIN IMMEDIATE"]
    assert sent == one + ["INSERT", "COMMIT"] + one + ["UPDATE", "COMMIT"]
