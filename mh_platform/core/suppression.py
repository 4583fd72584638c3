"""Small-cell suppression for county and city aggregates, so no child can be picked out.

Primary: every count from 1 to ``threshold - 1`` (default 1–4) is suppressed, margins included;
zeros are shown unless ``suppress_zeros`` (a zero names nobody; set it when "nobody" is itself
sensitive). Complementary: more entries are suppressed until no suppressed entry can be worked out
from the published rows, columns and totals. In a two-way table with margins the suppressed entries
are the edges of a bipartite graph (rows × columns, margins as an extra row and column); an entry is
recoverable by linear arithmetic exactly when it is a bridge of that graph, so complements are added
until there is no bridge (and no line with a single suppression). Complements prefer the smallest
non-zero inner cell, then non-zero totals, then zeros.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mh_platform.core.errors import ValidationFailed

Pos = tuple[int, int]


@dataclass(frozen=True)
class SuppressedTable:
    """A published two-way table: None marks a suppressed entry; positions index the grid with margins
    (row ``len(cells)`` holds the column totals, column ``len(cells[0])`` the row totals)."""

    cells: tuple[tuple[int | None, ...], ...]
    row_totals: tuple[int | None, ...]
    col_totals: tuple[int | None, ...]
    grand_total: int | None
    primary: frozenset[Pos]
    complementary: frozenset[Pos]


def _check(table: Sequence[Sequence[int]], threshold: int) -> tuple[int, int]:
    if threshold < 1:
        raise ValidationFailed("threshold must be >= 1", [{"field": "threshold"}])
    if not table or not table[0] or any(len(r) != len(table[0]) for r in table):
        raise ValidationFailed("a non-empty rectangular table is required", [{"field": "table"}])
    if any(not isinstance(v, int) or isinstance(v, bool) or v < 0 for r in table for v in r):
        raise ValidationFailed("counts must be non-negative integers", [{"field": "table"}])
    return len(table), len(table[0])


def _is_small(v: int, threshold: int, suppress_zeros: bool) -> bool:
    return v < threshold and (v > 0 or suppress_zeros)


def _component(start: tuple[str, int], adj: dict[tuple[str, int], set[tuple[str, int]]],
               skip: frozenset[tuple[str, int]]) -> set[tuple[str, int]]:
    seen, todo = {start}, [start]
    while todo:
        n = todo.pop()
        for m in adj.get(n, ()):
            if m not in seen and frozenset({n, m}) != skip:
                seen.add(m)
                todo.append(m)
    return seen


def suppress_table(table: Sequence[Sequence[int]], threshold: int = 5, *,
                   suppress_zeros: bool = False) -> SuppressedTable:
    """Suppress small cells (and margins) of a two-way count table, then add complements until none is recoverable."""
    n_rows, n_cols = _check(table, threshold)
    grid = [list(r) + [sum(r)] for r in table]
    grid.append([sum(table[r][c] for r in range(n_rows)) for c in range(n_cols)] + [sum(map(sum, table))])
    R, C = n_rows + 1, n_cols + 1  # extended size; index n_rows / n_cols are the margins

    def value(p: Pos) -> int:
        return grid[p[0]][p[1]]

    def key(p: Pos) -> tuple[bool, bool, int, Pos]:
        return (value(p) == 0, p[0] == n_rows or p[1] == n_cols, value(p), p)

    primary = {(r, c) for r in range(R) for c in range(C) if _is_small(grid[r][c], threshold, suppress_zeros)}
    hidden = set(primary)
    lines = [[(r, c) for c in range(C)] for r in range(R)] + [[(r, c) for r in range(R)] for c in range(C)]
    changed = bool(hidden)
    while changed:
        changed = False
        for line in lines:
            inside = [p for p in line if p in hidden]
            if len(inside) == 1:
                hidden.add(min((p for p in line if p not in hidden), key=key))
                changed = True
        if changed:
            continue
        adj: dict[tuple[str, int], set[tuple[str, int]]] = {}
        for r, c in hidden:
            adj.setdefault(("r", r), set()).add(("c", c))
            adj.setdefault(("c", c), set()).add(("r", r))
        for r, c in sorted(hidden):
            edge = frozenset({("r", r), ("c", c)})
            side_a = _component(("r", r), adj, edge)
            if ("c", c) in side_a:
                continue  # on a cycle: not recoverable
            side_b = _component(("c", c), adj, edge)
            rows_b = [i for kind, i in side_b if kind == "r"]
            cols_a = [j for kind, j in side_a if kind == "c"]
            options = [(x, y) for x in rows_b for y in cols_a if (x, y) not in hidden]
            hidden.add(min(options, key=key))  # closes a cycle through the bridge
            changed = True
            break
    cells = tuple(tuple(None if (r, c) in hidden else grid[r][c] for c in range(n_cols)) for r in range(n_rows))
    return SuppressedTable(
        cells=cells,
        row_totals=tuple(None if (r, n_cols) in hidden else grid[r][n_cols] for r in range(n_rows)),
        col_totals=tuple(None if (n_rows, c) in hidden else grid[n_rows][c] for c in range(n_cols)),
        grand_total=None if (n_rows, n_cols) in hidden else grid[n_rows][n_cols],
        primary=frozenset(primary),
        complementary=frozenset(hidden - primary),
    )


def suppress_counts(counts: Mapping[str, int], threshold: int = 5, *,
                    suppress_zeros: bool = False) -> tuple[dict[str, int | None], int | None]:
    """One-way version: (published counts, published total); a lone suppressed count gets a complement."""
    keys = list(counts)
    if not keys:
        return {}, 0
    t = suppress_table([[counts[k] for k in keys]], threshold, suppress_zeros=suppress_zeros)
    # In one row the column totals repeat the cells, so the row line alone decides what is hidden.
    return dict(zip(keys, t.cells[0], strict=True)), t.row_totals[0]


def suppress_linked_counts(rows: Sequence[Sequence[int]], threshold: int = 5
                           ) -> tuple[list[list[int | None]], list[int | None]]:
    """Suppression for a table of units × figures whose figures bound each other within a unit (a
    unit's eligible ≥ consented ≥ started ≥ completed): (published rows, published column totals).

    Per figure the rows are a one-way table with their total, as in ``suppress_counts``; but a figure
    shown beside a hidden one of the same unit would pin it (eligible hidden, consented shown 0 and
    the other units' consented known: the hidden eligible is at most the difference, often exactly
    it). So a unit with any hidden figure has all its figures hidden, and then each figure column gets
    complements until no hidden entry is alone against a shown total — repeated until nothing
    changes. Primary: counts 1 to ``threshold - 1`` (zeros shown), totals included; the complement is
    the smallest other unit (by its first figure), hidden whole, or the total when there is no other."""
    if threshold < 1:
        raise ValidationFailed("threshold must be >= 1", [{"field": "threshold"}])
    n = len(rows)
    width = len(rows[0]) if rows else 0
    if any(len(r) != width for r in rows) or any(not isinstance(v, int) or isinstance(v, bool) or v < 0
                                                 for r in rows for v in r):
        raise ValidationFailed("counts must be a rectangle of non-negative integers", [{"field": "table"}])
    totals = [sum(r[j] for r in rows) for j in range(width)]
    TOTAL = -1  # the totals' row index
    hidden = {(i, j) for i, r in enumerate(rows) for j, v in enumerate(r) if 0 < v < threshold}
    hidden |= {(TOTAL, j) for j, v in enumerate(totals) if 0 < v < threshold}
    changed = True
    while changed:
        changed = False
        for i in (*range(n), TOTAL):  # a unit's figures are hidden together
            if any((i, j) in hidden for j in range(width)) and not all((i, j) in hidden for j in range(width)):
                hidden |= {(i, j) for j in range(width)}
                changed = True
        if changed:
            continue
        # a lone hidden unit in a figure whose total is shown gets a complement: one more unit, the
        # smallest, hidden whole (the next pass hides it in every figure) — or, with no other unit,
        # the total (the only unit's total is its count)
        lone = [j for j in range(width)
                if (TOTAL, j) not in hidden and sum((i, j) in hidden for i in range(n)) == 1]
        if lone:
            others = [i for i in range(n) if (i, lone[0]) not in hidden]
            if others:
                hidden.add((min(others, key=lambda i: (rows[i][0], sum(rows[i]), i)), lone[0]))
            else:
                hidden.add((TOTAL, lone[0]))
            changed = True
    published = [[None if (i, j) in hidden else v for j, v in enumerate(r)] for i, r in enumerate(rows)]
    return published, [None if (TOTAL, j) in hidden else v for j, v in enumerate(totals)]
