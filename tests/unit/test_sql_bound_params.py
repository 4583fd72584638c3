"""T23: the SQL text the application hands to the database is written in the source, so values travel
as bound parameters — within what a static walk of one function at a time can see (below).

A static walk (ast) over ``mh_platform/`` and ``migrations/``:

* ``sa.text(…)`` / ``sa.literal_column(…)`` (``sqlalchemy.``, ``sql.expression.`` …, or the bare name
  imported from SQLAlchemy) and ``….exec_driver_sql(…)``: the SQL argument must be a string literal, a
  concatenation or conditional of literals, ``'…'.replace('…', '…')`` / ``str('…')`` of literals, or a
  name whose every assignment (in the function, else the module) is one of those — a parameter, a
  loop or ``with`` target is not;
* ``….execute(…)`` / ``executemany`` / ``executescript`` (SQLAlchemy or a raw DB-API cursor): the
  statement must not be *built as a string* — an f-string with fields, ``%`` or ``+`` with a
  non-literal, ``.format(…)``, ``.join(…)``, ``.replace(…)``, ``str(…)`` of a non-literal — nor be a
  *parameter of the enclosing function* (``def run(cur, sql): cur.execute(sql)`` moves the question to
  every caller, which the walk does not follow), nor a name assigned from any of those.

What it does not see: a statement reached through an attribute (``cur.execute(self.sql)``), a call's
return value (``cur.execute(build())``), a subscript, or a ``for`` / ``with`` target handed to
``execute*`` (statement lists in migrations are SQLAlchemy constructs); the caller side of a reviewed
helper; other modules' data flow. The semgrep rules (``.semgrep/python.yml``, taint mode) are the
second look at those.

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
    ("mh_platform/services/audit.py", "record_riding", "stmt"):
        "a parameter: the caller's statement. Its one caller (services/responses.py) passes _DONE_Q, a "
        "module-level sa.select whose values are typed bindparams (:c, :s); a new caller needs a new review",
    ("mh_platform/services/audit.py", "record_riding", "stmt_with_event"):
        "a parameter: audit.riding(stmt), the caller's statement plus the audit INSERT CTE of typed bindparams; "
        "its one caller passes _DONE_Q_AUDITED = audit.riding(_DONE_Q), built once at import",
}

# raw SQL text: sa.text, sa.literal_column (sqlalchemy., sql.expression. …), or the bare name imported from sqlalchemy
TEXT_FUNCS = {"text", "literal_column"}
DRIVER_SQL = {"exec_driver_sql"}
EXECUTE = {"execute", "executemany", "executescript"}
STRING_METHODS = {"format", "join", "replace"}  # str methods whose result carries their arguments' text
PARAMETER = "<parameter>"  # a name bound as a function parameter: whatever a caller passes
BOUND = "<bound at run time>"  # bound by for / with / :=


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
    if isinstance(node, ast.Call) and not node.keywords and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == "replace"
             and _is_literal(node.func.value, scope, seen))
            or (isinstance(node.func, ast.Name) and node.func.id == "str" and node.args)):
        return all(_is_literal(a, scope, seen) for a in node.args)  # 'a'.replace('b', 'c'), str('a')
    if isinstance(node, ast.Name) and node.id not in seen:
        values = scope.assignments(node.id)
        return bool(values) and all(_is_literal(v, scope, seen | {node.id}) for v in values)
    return False


def _builds_string(node: ast.AST, scope: _Scope, seen: frozenset[str] = frozenset()) -> bool:
    """A string put together at run time (the shapes through which a value can enter SQL text), or
    whatever a caller passes in (a function parameter: the helper ``def run(cur, sql): cur.execute(sql)``
    moves the question to every call site, which this walk does not follow)."""
    if _is_literal(node, scope, seen):
        return False
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Mod):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in STRING_METHODS:
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "str":
        return True  # str(x): a compiled statement (literal_binds), or any value, turned into SQL text
    if isinstance(node, ast.IfExp):
        return _builds_string(node.body, scope, seen) or _builds_string(node.orelse, scope, seen)
    if isinstance(node, ast.Name) and node.id == PARAMETER:
        return True
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
                params = [a.arg for a in (n.posonlyargs + n.args + n.kwonlyargs)] + \
                    [a.arg for a in (n.vararg, n.kwarg) if a is not None] if isinstance(n, ast.arguments) else []
                names = params if isinstance(n, ast.arguments) \
                    else [t.id for t in ast.walk(n.target if isinstance(n, ast.For | ast.NamedExpr) else n)
                          if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)]
                if name in names:
                    out.append(ast.Name(id=PARAMETER if isinstance(n, ast.arguments) else BOUND, ctx=ast.Load()))
        return out

    def assignments(self, name: str) -> list[ast.AST]:
        if self.function is not None:
            found = self._assigned(self.function, name, top_only=False)
            if found:
                return found
        return self._assigned(self.module, name, top_only=True)


def _text_names(module: ast.Module) -> set[str]:
    """Bare names under which SQLAlchemy's text() / literal_column() are imported in this module."""
    names = set()
    for node in ast.walk(module):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy":
            names |= {a.asname or a.name for a in node.names if a.name in TEXT_FUNCS}
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
        if attr in TEXT_FUNCS and isinstance(f, ast.Attribute) and _is_sqlalchemy_ref(f.value):
            sink, bad = attr, not _is_literal(arg, scope)
        elif isinstance(f, ast.Name) and f.id in bare_text:
            sink, bad = f.id, not _is_literal(arg, scope)
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
    "helper parameter into execute": "def run(cur, sql):\n    cur.execute(sql)\n",
    "helper parameter via a name": "def run(conn, sql, *a):\n    q = sql\n    conn.executescript(q)\n",
    "keyword-only parameter": "def run(s, *, stmt):\n    s.execute(stmt)\n",
    "literal_column f-string": "import sqlalchemy as sa\ndef f(x):\n    return sa.literal_column(f'{x}')\n",
    "bare literal_column import": "from sqlalchemy import literal_column as lc\ndef f(x):\n    return lc(x)\n",
    "replace into execute": "def f(cur, x):\n    cur.execute('SELECT * FROM t WHERE a = X'.replace('X', x))\n",
    "replace into text": "import sqlalchemy as sa\ndef f(x):\n    sa.text('SELECT X'.replace('X', x))\n",
    "str() into execute via a name": "def f(cur, x):\n    q = str(x)\n    cur.execute(q)\n",
    "str() of a compiled statement": "def f(s, stmt):\n    s.execute(str(stmt.compile(compile_kwargs={'literal_binds': True})))\n",
}
SAFE = {
    "literal": "import sqlalchemy as sa\ndef f(s, x):\n    s.execute(sa.text('SELECT * FROM t WHERE a = :a'), {'a': x})\n",
    "module constant": "import sqlalchemy as sa\nQ = \"status != 'closed'\"\nsa.Index('i', 'c', sqlite_where=sa.text(Q))\n",
    "conditional literal": "def f(cur, read):\n    sql = 'BEGIN' if read else 'BEGIN IMMEDIATE'\n    cur.execute(sql)\n",
    "literal concatenation": "import sqlalchemy as sa\nsa.text('SELECT 1 ' + 'FROM t')\n",
    "core construct": "import sqlalchemy as sa\ndef f(s, t, x):\n    stmt = sa.select(t).where(t.c.a == x)\n    s.execute(stmt)\n",
    "driver sql literal": "def f(conn):\n    conn.exec_driver_sql(\"SELECT pg_advisory_xact_lock(hashtext('m'))\")\n",
    "literal_column literal": "import sqlalchemy as sa\nC = sa.literal_column('1')\n",
    "literal replace": "def f(cur):\n    cur.execute('SELECT 1 FROM t'.replace('t', 'u'))\n",
    "str of a literal": "def f(cur):\n    cur.execute(str('SELECT 1'))\n",
    "parameter not given to execute": "def f(cur, read):\n    if read:\n        cur.execute('BEGIN')\n",
    "module construct into execute": "import sqlalchemy as sa\nQ = sa.select(sa.column('a'))\ndef f(s):\n    s.execute(Q)\n",
}


@pytest.mark.parametrize("source", UNSAFE.values(), ids=UNSAFE.keys())
def test_scanner_finds_string_built_sql(source):
    assert len(_scan(source, "x.py")) == 1


@pytest.mark.parametrize("source", SAFE.values(), ids=SAFE.keys())
def test_scanner_passes_literal_sql(source):
    assert _scan(source, "x.py") == []
