"""T23: every SQL string the application hands to the database is a literal, so values always travel
as bound parameters.

A static walk (ast) over ``mh_platform/`` and ``migrations/``:

* ``sa.text(…)`` / ``sqlalchemy.text(…)`` / ``text(…)`` imported from SQLAlchemy and
  ``….exec_driver_sql(…)``: the SQL argument must be a string literal, a concatenation or
  conditional of literals, or a name whose every assignment (in the function, else the module) is
  one of those;
* ``….execute(…)`` / ``executemany`` / ``executescript`` (SQLAlchemy or a raw DB-API cursor): the
  statement must not be *built as a string* — an f-string with fields, ``%`` or ``+`` with a
  non-literal, ``.format(…)``, ``.join(…)``, or a name assigned from one of those.

A construction that is none of these was read by a person and is listed in ``REVIEWED`` with why no
value can reach the SQL text; an entry that no longer matches anything fails the test too, so the
list only ever names real places.
"""

from __future__ import annotations

import ast
import pathlib
from dataclasses import dataclass

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SCANNED = ("mh_platform", "migrations")

# (file, enclosing function, the SQL argument as ast.unparse writes it) → why it is safe.
REVIEWED: dict[tuple[str, str, str], str] = {
    ("mh_platform/services/flags.py", "lock_audit", "f'SELECT pg_advisory_xact_lock({AUDIT_LOCK})'"):
        "AUDIT_LOCK is a module-level integer constant (the audit writer's advisory-lock key); no value from outside",
    ("mh_platform/services/responses.py", "_insert_ignore_for", "sql"):
        "table and column names quoted by the dialect's identifier preparer from the metadata; every value is a "
        "typed bindparam (:name)",
    ("mh_platform/db/bulk.py", "BulkInsert.write", "sql"):
        "quoted table/column names from the metadata; row values are '?' parameters; constant columns are "
        "sqlite_literal() output (NULL, int, finite float, quote-doubled text, X'hex' blob; anything else refused)",
    ("mh_platform/db/bulk.py", "BulkInsert.write", "f'PRAGMA cache_size={int(want)}'"):
        "an int() computed from row counts; PRAGMA takes no bound parameters",
    ("mh_platform/db/bulk.py", "BulkInsert.write", "f'PRAGMA cache_size={int(old)}'"):
        "an int() read back from PRAGMA cache_size; PRAGMA takes no bound parameters",
}

TEXT_FUNCS = {"text"}  # sa.text, sqlalchemy.text, sql.expression.text, or a bare text imported from sqlalchemy
DRIVER_SQL = {"exec_driver_sql"}
EXECUTE = {"execute", "executemany", "executescript"}


@dataclass(frozen=True)
class Finding:
    file: str
    function: str
    arg: str
    line: int
    sink: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.file, self.function, self.arg)


def _is_literal(node: ast.AST, scope: _Scope, seen: frozenset[str] = frozenset()) -> bool:
    """A string whose text is fixed in the source: no value from outside can be in it."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return all(isinstance(v, ast.Constant) for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _is_literal(node.left, scope, seen) and _is_literal(node.right, scope, seen)
    if isinstance(node, ast.IfExp):
        return _is_literal(node.body, scope, seen) and _is_literal(node.orelse, scope, seen)
    if isinstance(node, ast.Name) and node.id not in seen:
        values = scope.assignments(node.id)
        return bool(values) and all(_is_literal(v, scope, seen | {node.id}) for v in values)
    return False


def _builds_string(node: ast.AST, scope: _Scope, seen: frozenset[str] = frozenset()) -> bool:
    """A string put together at run time (the shapes through which a value can enter SQL text)."""
    if _is_literal(node, scope, seen):
        return False
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in {"format", "join"}:
        return True
    if isinstance(node, ast.IfExp):
        return _builds_string(node.body, scope, seen) or _builds_string(node.orelse, scope, seen)
    if isinstance(node, ast.Name) and node.id not in seen:
        return any(_builds_string(v, scope, seen | {node.id}) for v in scope.assignments(node.id))
    return False


class _Scope:
    def __init__(self, module: ast.Module, function: ast.AST | None):
        self.module, self.function = module, function

    @staticmethod
    def _assigned(tree: ast.AST, name: str, *, top_only: bool) -> list[ast.AST]:
        nodes = tree.body if top_only else list(ast.walk(tree))  # type: ignore[attr-defined]
        out: list[ast.AST] = []
        for n in nodes:
            if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in n.targets):
                out.append(n.value)
            elif isinstance(n, ast.AnnAssign | ast.AugAssign) and isinstance(n.target, ast.Name) \
                    and n.target.id == name and n.value is not None:
                out.append(n.value if isinstance(n, ast.AnnAssign) else ast.BinOp(n.target, n.op, n.value))
            elif isinstance(n, ast.For | ast.With | ast.NamedExpr | ast.arguments):
                # bound by iteration, a context manager, := or as a parameter: not a literal
                names = [a.arg for a in (n.posonlyargs + n.args + n.kwonlyargs)] if isinstance(n, ast.arguments) \
                    else [t.id for t in ast.walk(n.target if isinstance(n, ast.For | ast.NamedExpr) else n)
                          if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)]
                if name in names:
                    out.append(ast.Name(id="<bound at run time>", ctx=ast.Load()))
        return out

    def assignments(self, name: str) -> list[ast.AST]:
        if self.function is not None:
            found = self._assigned(self.function, name, top_only=False)
            if found:
                return found
        return self._assigned(self.module, name, top_only=True)


def _text_names(module: ast.Module) -> set[str]:
    """Bare names under which SQLAlchemy's text() is imported in this module."""
    names = set()
    for node in ast.walk(module):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
            names |= {a.asname or a.name for a in node.names if a.name == "text"}
    return names


def _scan(source: str, rel: str) -> list[Finding]:
    module = ast.parse(source)
    bare_text = _text_names(module)
    findings: list[Finding] = []

    def visit(node: ast.AST, qual: list[str], func: ast.AST | None) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, [*qual, child.name], child)
                continue
            if isinstance(child, ast.ClassDef):
                visit(child, [*qual, child.name], func)
                continue
            if isinstance(child, ast.Call) and child.args:
                check(child, qual, func)
            visit(child, qual, func)

    def check(call: ast.Call, qual: list[str], func: ast.AST | None) -> None:
        f = call.func
        attr = f.attr if isinstance(f, ast.Attribute) else None
        arg = call.args[0]
        scope = _Scope(module, func)
        if (attr in TEXT_FUNCS and isinstance(f, ast.Attribute) and _is_sqlalchemy_ref(f.value)) or \
                (isinstance(f, ast.Name) and f.id in bare_text):
            sink, bad = "text", not _is_literal(arg, scope)
        elif attr in DRIVER_SQL:
            sink, bad = "exec_driver_sql", not _is_literal(arg, scope)
        elif attr in EXECUTE:
            sink, bad = attr, _builds_string(arg, scope)
        else:
            return
        if bad:
            findings.append(Finding(rel, ".".join(qual) or "<module>", ast.unparse(arg), call.lineno, sink))

    visit(module, [], None)
    return findings


def _is_sqlalchemy_ref(node: ast.AST) -> bool:
    """``sa`` / ``sqlalchemy`` / ``sqlalchemy.sql`` … (any module alias ending the SQLAlchemy way)."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and node.id in {"sa", "sqlalchemy", "sql", "expression"}


def _files() -> list[pathlib.Path]:
    return sorted(p for d in SCANNED for p in (REPO / d).rglob("*.py"))


@pytest.fixture(scope="module")
def findings() -> list[Finding]:
    out: list[Finding] = []
    for path in _files():
        out += _scan(path.read_text(encoding="utf-8"), path.relative_to(REPO).as_posix())
    return out


def test_every_sql_text_is_literal_or_reviewed(findings):
    unreviewed = [f for f in findings if f.key not in REVIEWED]
    assert not unreviewed, "SQL text built from non-literals (bind the values, or review and list in REVIEWED):\n" + \
        "\n".join(f"  {f.file}:{f.line} {f.function}: {f.sink}({f.arg})" for f in unreviewed)


def test_every_reviewed_entry_still_exists(findings):
    stale = set(REVIEWED) - {f.key for f in findings}
    assert not stale, f"REVIEWED names places that no longer exist: {sorted(stale)}"


def test_reviewed_entries_give_a_reason():
    assert all(len(reason) > 20 for reason in REVIEWED.values())


def test_the_walk_sees_the_code():
    files = _files()
    assert len(files) > 50
    sources = "".join(p.read_text(encoding="utf-8") for p in files)
    assert sources.count("sa.text(") >= 10  # the partial-index predicates, the advisory locks


# positive controls: the scanner finds each shape it claims to find, and passes the safe ones
UNSAFE = {
    "f-string in text": "import sqlalchemy as sa\ndef f(x):\n    sa.text(f'SELECT * FROM t WHERE a = {x}')\n",
    "concatenation in text": "import sqlalchemy as sa\ndef f(x):\n    sa.text('SELECT ' + x)\n",
    "format in text": "import sqlalchemy\ndef f(x):\n    sqlalchemy.text('SELECT {}'.format(x))\n",
    "percent in text": "import sqlalchemy as sa\ndef f(x):\n    sa.text('SELECT %s' % x)\n",
    "parameter into text": "import sqlalchemy as sa\ndef f(sql):\n    return sa.text(sql)\n",
    "bare text import": "from sqlalchemy import text\ndef f(x):\n    q = f'SELECT {x}'\n    text(q)\n",
    "driver sql": "def f(conn, x):\n    conn.exec_driver_sql('DELETE FROM t WHERE id = ' + x)\n",
    "cursor f-string": "def f(cur, x):\n    cur.execute(f'SELECT {x}')\n",
    "cursor via variable": "def f(cur, x):\n    sql = 'SELECT ' + x\n    cur.executemany(sql, [])\n",
    "session join": "def f(s, cols):\n    s.execute(', '.join(cols))\n",
    "loop variable into text": "import sqlalchemy as sa\ndef f(xs):\n    for q in xs:\n        sa.text(q)\n",
}
SAFE = {
    "literal": "import sqlalchemy as sa\ndef f(s, x):\n    s.execute(sa.text('SELECT * FROM t WHERE a = :a'), {'a': x})\n",
    "module constant": "import sqlalchemy as sa\nQ = \"status != 'closed'\"\nsa.Index('i', 'c', sqlite_where=sa.text(Q))\n",
    "conditional literal": "def f(cur, read):\n    sql = 'BEGIN' if read else 'BEGIN IMMEDIATE'\n    cur.execute(sql)\n",
    "literal concatenation": "import sqlalchemy as sa\nsa.text('SELECT 1 ' + 'FROM t')\n",
    "core construct": "import sqlalchemy as sa\ndef f(s, t, x):\n    stmt = sa.select(t).where(t.c.a == x)\n    s.execute(stmt)\n",
    "driver sql literal": "def f(conn):\n    conn.exec_driver_sql(\"SELECT pg_advisory_xact_lock(hashtext('m'))\")\n",
}


@pytest.mark.parametrize("source", UNSAFE.values(), ids=UNSAFE.keys())
def test_scanner_finds_string_built_sql(source):
    assert len(_scan(source, "x.py")) == 1


@pytest.mark.parametrize("source", SAFE.values(), ids=SAFE.keys())
def test_scanner_passes_literal_sql(source):
    assert _scan(source, "x.py") == []
