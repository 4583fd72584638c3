"""Bulk inserts straight through the DBAPI connection of a session, in its transaction.

For the few large set-based writes (paper import): no ORM unit of work and no per-value SQLAlchemy
type processing. The caller hands over rows whose values are already in the form SQLAlchemy would
have bound for the column (``BulkInsert.bind`` gives that form for a value, through the column
type's own bind processor; ``uuid_hex`` is the fast form of a UUID column value). SQLite gets one
``executemany``; PostgreSQL gets ``COPY … FROM STDIN`` (text format), whose input functions store
the same values an ``INSERT`` of those parameters would.

The rows land in the session's current transaction: a later error rolls them back with the rest.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from mh_platform.db.engine import raw_dbapi_connection

BULK_CACHE_KIB_MIN = 8 * 1024
BULK_CACHE_KIB_MAX = 128 * 1024
"""SQLite page cache during a bulk write: half a KiB per row, between these bounds (KiB)."""


IN_CHUNK = 10_000
"""Values per SQLite IN list (SQLite allows 32,766 bound parameters per statement)."""


def in_(s: Session, column: Any, values: Sequence[Any]) -> Any:
    """``column IN values`` for up to IN_CHUNK values; on PostgreSQL ``column = ANY(:array)``, one
    bound array (cheaper to compile, send and plan than thousands of parameters).

    UUID, bytes and text values (every bulk look-up's) skip the per-value type processing, which
    costs more than the query for tens of thousands of values: on SQLite UUIDs are bound as the
    32 hex digits the ``Uuid`` type stores; on PostgreSQL the array goes as one array literal cast
    to the column's array type (``array_literal``)."""
    vals = list(values)
    if s.get_bind().dialect.name == "postgresql":
        lit = array_literal(vals)
        if lit is not None:
            return column == sa.any_(sa.bindparam(None, lit, type_=_ArrayLiteral(column.type)))
        return column == sa.any_(sa.bindparam(None, vals, type_=postgresql.ARRAY(column.type)))
    # one expanding parameter: SQLAlchemy would otherwise coerce every element of a list at once
    if vals and all(type(v) is uuid.UUID for v in vals):
        return sa.type_coerce(column, sa.String()).in_(sa.bindparam(None, [v.hex for v in vals], expanding=True,
                                                                    type_=sa.String()))
    return column.in_(sa.bindparam(None, vals, expanding=True, type_=column.type))


class _ArrayLiteral(sa.types.TypeDecorator):
    """A PostgreSQL array parameter given as its literal text (``array_literal``): bound as it is
    and rendered ``$1::ELEMENT[]``, so the server reads it as the array type and the planner sees
    a constant array (index scan, or a hashed ``= ANY``). A ``CAST`` of a text parameter would stay
    an expression evaluated per row, and its ``= ANY`` a linear search: minutes for 26,000 ids."""

    impl = postgresql.ARRAY(sa.Uuid())
    cache_ok = True

    def __init__(self, item_type: Any) -> None:
        super().__init__(item_type)
        self.item_type = item_type  # part of the statement cache key (an __init__ argument)
        self.impl = postgresql.ARRAY(item_type)

    def bind_processor(self, dialect: Any) -> None:
        return None


def array_literal(values: Sequence[Any]) -> str | None:
    """A PostgreSQL array literal (``{…}``) of UUIDs, bytes (bytea hex) or text, every element
    double-quoted with backslashes and quotes escaped — or None for other values (bound as a list)."""
    if all(type(v) is uuid.UUID for v in values):
        return "{" + ",".join([v.hex for v in values]) + "}"
    if all(type(v) is bytes for v in values):
        return "{" + ",".join(['"\\\\x' + v.hex() + '"' for v in values]) + "}"
    if all(type(v) is str for v in values):
        return "{" + ",".join(['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]) + "}"
    return None


def upsert_insert(s: Session, table: sa.Table) -> Any:
    """The session's dialect's ``INSERT`` for ``table`` (SQLite or PostgreSQL): the one that offers
    ``on_conflict_do_nothing`` / ``on_conflict_do_update`` — the same SQL on both databases."""
    from sqlalchemy.dialects import sqlite

    return (postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert)(table)


def in_chunks(s: Session, column: Any, values: Sequence[Any]) -> Iterator[Any]:
    """``column IN values`` for any number of values, as few conditions (queries) as the database
    allows: one on PostgreSQL, one per IN_CHUNK values on SQLite."""
    step = len(values) if s.get_bind().dialect.name == "postgresql" else IN_CHUNK
    for i in range(0, len(values), max(step, 1)):
        yield in_(s, column, values[i:i + step])


class IdReader:
    """UUID columns read without SQLAlchemy's per-value result processing (bulk look-ups of tens of
    thousands of rows): select ``ids.col(Table.some_id)``, get the driver's raw value (32 hex digits
    on SQLite, a ``uuid.UUID`` from psycopg on PostgreSQL) and turn it into a UUID with
    ``ids.to_uuid(raw)`` — memoised, so a class or school id repeated on every row is converted once."""

    def __init__(self) -> None:
        self._memo: dict[Any, uuid.UUID] = {}

    def col(self, column: Any) -> Any:
        return sa.type_coerce(column, sa.String())

    def to_uuid(self, raw: Any) -> uuid.UUID:
        if type(raw) is uuid.UUID:
            return raw
        got = self._memo.get(raw)
        if got is None:
            got = self._memo[raw] = uuid.UUID(hex=raw)
        return got


def uuid_hex(raw: bytes) -> str:
    """A UUID column's stored value from its 16 bytes: 32 hex digits (``CHAR(32)`` on SQLite, and a
    form the ``uuid`` type reads on PostgreSQL). Equal to SQLAlchemy's ``Uuid`` bind on SQLite."""
    return raw.hex()


class BulkInsert:
    """Insert many rows of ``columns`` into ``table`` in the session's transaction."""

    def __init__(self, s: Session, table: sa.Table, columns: Sequence[str],
                 constants: Mapping[str, Any] | None = None) -> None:
        """``columns``: the values each row gives, in order; ``constants``: column → value (as given
        to the ORM, bound here through ``bind``) that is the same on every row. On SQLite the
        constants are written into the statement as SQL literals, so ``executemany`` binds only the
        per-row values (binding is about half of its time on a wide row); on PostgreSQL they are
        appended to every COPY row."""
        self.session = s
        self.table = table
        self.columns = tuple(columns)
        self.dialect = s.get_bind().dialect
        self.name = self.dialect.name
        if self.name not in ("sqlite", "postgresql"):
            raise NotImplementedError(f"bulk insert on {self.name}")
        self._procs: dict[str, Any] = {}
        const = dict(constants or {})
        for c in (*self.columns, *const):
            if c not in table.c:
                raise ValueError(f"{table.name} has no column {c}")
        if set(const) & set(self.columns) or len(set(self.columns)) != len(self.columns):
            raise ValueError("a column is given twice")
        self.constant_columns = tuple(const)
        self.constants = tuple(self.bind(c, v) for c, v in const.items())

    def bind(self, column: str, value: Any) -> Any:
        """``value`` as SQLAlchemy binds it for ``column`` (the column type's bind processor); call it
        once per distinct value (an import's constants, per-student values), not per row. On
        PostgreSQL, UUIDs and datetimes come back as their text form (what COPY reads)."""
        typ = self.table.c[column].type
        if isinstance(typ, sa.JSON):  # the serialised text, as SQLAlchemy (SQLite) / psycopg's Json dump it
            if value is None and typ.none_as_null:
                return None
            return (getattr(self.dialect, "_json_serializer", None) or json.dumps)(value)
        if value is None:
            return None
        if column not in self._procs:
            self._procs[column] = typ.dialect_impl(self.dialect).bind_processor(self.dialect)
        proc = self._procs[column]
        v = proc(value) if proc is not None else value
        if self.name == "postgresql":
            if isinstance(v, uuid.UUID):
                return v.hex
            if isinstance(v, datetime):
                return v.isoformat()
        return v

    def write(self, rows: Iterable[Sequence[Any]], *, count: int | None = None) -> int:
        """Insert ``rows`` (tuples in ``columns`` order; an iterator is consumed as the database
        takes the rows, so producing them overlaps the database's own work on PostgreSQL);
        ``count`` is how many an iterator will give (it sizes SQLite's cache). Returns how many."""
        conn = self.session.connection()  # joins (or begins) the session's transaction
        dbapi = raw_dbapi_connection(conn)  # on SQLite, with the BEGIN sent (it waits for a first statement)
        if dbapi is None:
            raise RuntimeError("the session's connection is closed")
        q = self.dialect.identifier_preparer
        table = q.format_table(self.table)
        cols = ", ".join(q.quote(c) for c in (*self.columns, *self.constant_columns))
        n = 0
        if self.name == "sqlite":
            if count is None:
                rows = rows if isinstance(rows, list) else list(rows)
                count = len(rows)
            values = ", ".join(["?"] * len(self.columns) + [sqlite_literal(v) for v in self.constants])
            sql = f"INSERT INTO {table} ({cols}) VALUES ({values})"  # noqa: S608 - quoted names, checked literals (sqlite_literal)  # nosec B608
            cur = dbapi.cursor()
            try:
                # a page cache large enough for the pages this write keeps coming back to (index
                # leaves): with SQLite's default 2 MB it spills and rereads them; back to the
                # connection's own size right after (the dirty pages are written at commit as usual)
                old = cur.execute("PRAGMA cache_size").fetchone()[0]
                want = -min(BULK_CACHE_KIB_MAX, max(BULK_CACHE_KIB_MIN, count // 2))
                if old < 0 and old > want:
                    cur.execute(f"PRAGMA cache_size={int(want)}")  # nosemgrep: mhp-sql-built-string - an int(); PRAGMA binds nothing
                try:
                    # nosemgrep: mhp-sql-built-string - quoted names, values bound (?), constants from sqlite_literal
                    cur.executemany(sql, rows)  # type: ignore[arg-type]  # sqlite3 takes any iterable
                    n = cur.rowcount  # read before the PRAGMA below resets it
                finally:
                    if old < 0 and old > want:
                        cur.execute(f"PRAGMA cache_size={int(old)}")  # nosemgrep: mhp-sql-built-string - an int()
            finally:
                cur.close()
            return n
        copy_sql = f"COPY {table} ({cols}) FROM STDIN"
        consts = self.constants
        cur = dbapi.cursor()
        # psycopg's queued writer: a worker thread pushes the formatted blocks to the server while
        # this thread goes on producing and formatting rows (the default writer makes the producer
        # wait on every flush, so the server's COPY and our Python took turns instead of overlapping)
        with cur, cur.copy(copy_sql, writer=QueuedLibpqWriter(cur)) as cp:  # type: ignore[attr-defined]
            write_row = cp.write_row
            if consts:
                for r in rows:
                    write_row((*r, *consts))
                    n += 1
            else:
                for r in rows:
                    write_row(r)
                    n += 1
        return n


def sqlite_literal(value: Any) -> str:
    """A bound value (``BulkInsert.bind``'s form) as an SQLite literal that stores exactly what
    binding it would: NULL, an integer, a finite float, 'text' (quotes doubled) or X'blob'.
    Anything else is refused (never formatted with str())."""
    if value is None:
        return "NULL"
    if type(value) is bool:
        return "1" if value else "0"
    if type(value) is int:
        if not -2 ** 63 <= value < 2 ** 63:  # binding it would fail (OverflowError); a literal would turn REAL
            raise ValueError("a constant integer must fit in 64 bits")
        return str(value)
    if type(value) is float:
        if not math.isfinite(value):
            raise ValueError("a constant float must be finite")
        return repr(value)
    if type(value) is str:
        if "\x00" in value:
            raise ValueError("a constant text must not contain NUL")
        return "'" + value.replace("'", "''") + "'"
    if type(value) in (bytes, bytearray, memoryview):  # LargeBinary binds a memoryview on SQLite
        return "X'" + bytes(value).hex() + "'"
    raise TypeError(f"no SQLite literal for {type(value).__name__}")
