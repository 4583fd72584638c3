"""db.bulk: the raw-driver bulk insert (executemany / COPY) and the set-based look-ups of the paper
import, on the database under test (SQLite, and PostgreSQL when MHP_TEST_DB_URL names one).

Each check compares with what SQLAlchemy itself stores or selects for the same values, so the
bulk paths stay interchangeable with the ORM for every reader."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from mh_platform.db.bulk import BulkInsert, array_literal, in_, in_chunks, sqlite_literal


def _scratch(name: str) -> sa.Table:
    return sa.Table(name, sa.MetaData(),
                    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
                    sa.Column("t", sa.String(64)), sa.Column("n", sa.Integer), sa.Column("f", sa.Float),
                    sa.Column("b", sa.LargeBinary), sa.Column("j", sa.JSON), sa.Column("d", sa.DateTime(timezone=True)),
                    sa.Column("u", sa.Uuid), sa.Column("flag", sa.Boolean))


def _stored(s, table: sa.Table, row_id: int) -> tuple:
    """The row as the database holds it — SQLite's storage class and value per column, PostgreSQL's
    text form — not as SQLAlchemy would read it back."""
    names = [c.name for c in table.c if c.name != "id"]
    if s.get_bind().dialect.name == "sqlite":
        cols = ", ".join(f"typeof({n}), {n}" for n in names)
    else:
        cols = ", ".join(f"{n}::text" for n in names)
    return tuple(s.execute(sa.text(f"SELECT {cols} FROM {table.name} WHERE id = :i"), {"i": row_id}).one())


VALUES = {"t": "it's \"quoted\" \\ 中文", "n": -7, "f": 2.5, "b": b"\x00'\\\xff", "j": {"a": [1, "x'y"], "b": None},
          "d": datetime(2026, 12, 7, 11, 30, 5, 123456, tzinfo=UTC), "u": uuid.UUID(int=2 ** 100 + 5), "flag": True}


def test_constants_store_what_binding_stores(ctx):
    """The same values given per row, as constants (SQLite: SQL literals in the statement;
    PostgreSQL: appended to each COPY row) and through SQLAlchemy's own insert are stored alike."""
    table = _scratch("bulk_scratch_a")
    with ctx.uow() as uow:
        s = uow.session
        table.create(s.connection())
        w = BulkInsert(s, table, tuple(VALUES) + ("id",))
        assert w.write([tuple(w.bind(c, v) for c, v in VALUES.items()) + (1,)]) == 1
        assert BulkInsert(s, table, ("id",), constants=VALUES).write([(2,)]) == 1
        s.execute(sa.insert(table), [{"id": 3, **VALUES}])
        per_row, const, orm = (_stored(s, table, i) for i in (1, 2, 3))
        assert per_row == const == orm
        const_back, orm_back = (s.execute(sa.select(table).where(table.c.id == i)).one()._mapping for i in (2, 3))
        assert {k: const_back[k] for k in VALUES} == {k: orm_back[k] for k in VALUES}
        assert const_back["t"] == VALUES["t"] and const_back["b"] == VALUES["b"] and const_back["j"] == VALUES["j"]
        # None and False as constants
        BulkInsert(s, table, ("id",), constants={"t": None, "flag": False, "j": None}).write([(4,)])
        s.execute(sa.insert(table), [{"id": 5, "t": None, "flag": False, "j": None}])
        assert _stored(s, table, 4) == _stored(s, table, 5)


def test_a_column_given_twice_or_unknown_is_refused(ctx):
    table = _scratch("bulk_scratch_b")
    with ctx.uow() as uow:
        with pytest.raises(ValueError, match="twice"):
            BulkInsert(uow.session, table, ("id", "t"), constants={"t": "x"})
        with pytest.raises(ValueError, match="twice"):
            BulkInsert(uow.session, table, ("id", "id"))
        with pytest.raises(ValueError, match="no column"):
            BulkInsert(uow.session, table, ("id",), constants={"nope": 1})


def test_sqlite_literals_are_exact_or_refused():
    assert sqlite_literal(None) == "NULL"
    assert sqlite_literal(True) == "1" and sqlite_literal(False) == "0"
    assert sqlite_literal(-12) == "-12" and sqlite_literal(0.1) == "0.1"
    assert sqlite_literal("a'b") == "'a''b'"
    assert sqlite_literal(b"\x00\xff'") == "X'00ff27'"
    assert sqlite_literal(-2 ** 63) == str(-2 ** 63) and sqlite_literal(2 ** 63 - 1) == str(2 ** 63 - 1)
    for bad in (math.nan, math.inf, "nul\x00", datetime(2026, 1, 1), uuid.uuid4(), [1], 10 ** 30 * 1j,
                2 ** 63, -2 ** 63 - 1):
        with pytest.raises((TypeError, ValueError)):
            sqlite_literal(bad)


def test_a_failed_bulk_write_raises_and_the_transaction_keeps_nothing(ctx):
    """A row the database refuses (a duplicate key) fails the whole write — on PostgreSQL the
    server's error is raised when the COPY ends, after the queued writer has sent every block —
    and rolling back keeps none."""
    table = _scratch("bulk_scratch_c")
    with ctx.uow() as uow:
        table.create(uow.session.connection())
        uow.commit()
    with ctx.uow() as uow:
        w = BulkInsert(uow.session, table, ("id", "t"))
        # the driver's own integrity error (the raw DBAPI path): sqlite3's or psycopg's
        with pytest.raises(Exception, match=r"(?i)unique|duplicate"):
            w.write(iter([(n, f"r{n}") for n in range(5000)] + [(7, "again")]), count=5001)
    with ctx.uow() as uow:
        assert uow.session.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0


def test_a_producer_failing_mid_write_aborts_it_and_the_transaction_keeps_nothing(ctx):
    """The rows come from a generator (the import builds and seals them while the database takes
    them): an error in it at row 300,000 — after the queued COPY writer has sent many blocks, and
    after an earlier write in the same transaction — propagates as it is, and the rollback leaves
    no row of either write."""
    table = _scratch("bulk_scratch_e")
    with ctx.uow() as uow:
        table.create(uow.session.connection())
        uow.commit()

    def rows():
        for n in range(1, 400_000):
            if n == 300_000:
                raise RuntimeError("sealing failed")
            yield (n, "x" * 20)

    with ctx.uow() as uow:
        s = uow.session
        assert BulkInsert(s, table, ("id", "t")).write([(0, "before")]) == 1
        with pytest.raises(RuntimeError, match="sealing failed"):
            BulkInsert(s, table, ("id", "t")).write(rows(), count=400_000)
    with ctx.uow() as uow:
        assert uow.session.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0


TRICKY = ["plain", 'a"b', "c\\d", "{x,y}", " sp ", "", "NULL", "中文", "it's", "\\\"", "a,b", "}{"]


def test_set_look_ups_match_exactly_the_values_given(ctx):
    """``in_`` / ``in_chunks`` for UUIDs, bytes and text — on PostgreSQL one array literal
    (``array_literal``), on SQLite an IN list (UUIDs bound as their stored hex) — select exactly
    the rows whose value was asked for, whatever characters the values hold."""
    table = _scratch("bulk_scratch_d")
    rows = [{"id": i, "t": t, "u": uuid.uuid4(), "b": bytes([i, 0x5C, 0x22, 0x2C, 0x7B, 0x00]) + t.encode()}
            for i, t in enumerate(TRICKY)]
    with ctx.uow() as uow:
        s = uow.session
        table.create(s.connection())
        s.execute(sa.insert(table), rows)
        want = [r for r in rows if r["id"] % 2 == 0]
        for col, key in ((table.c.t, "t"), (table.c.u, "u"), (table.c.b, "b")):
            asked = [r[key] for r in want] + ([uuid.uuid4()] if key == "u" else [b"\x01"] if key == "b" else ["zz"])
            got = sorted(s.execute(sa.select(table.c.id).where(in_(s, col, asked))).scalars())
            assert got == [r["id"] for r in want], key
            got = sorted(i for cond in in_chunks(s, col, asked) for i in s.execute(sa.select(table.c.id).where(cond))
                         .scalars())
            assert got == [r["id"] for r in want], key
            assert s.execute(sa.select(table.c.id).where(in_(s, col, []))).all() == []


def test_array_literals():
    u = uuid.UUID(int=1)
    assert array_literal([u]) == "{" + u.hex + "}"
    assert array_literal([b"\x00\xab"]) == '{"\\\\x00ab"}'
    assert array_literal(['a"b', "c\\d"]) == '{"a\\"b","c\\\\d"}'
    assert array_literal([1, 2]) is None and array_literal([u, "x"]) is None
