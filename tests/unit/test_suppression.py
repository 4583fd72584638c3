"""Small-cell suppression: primary cells hidden, and nothing hidden can be recovered from what is published."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from mh_platform.core.errors import ValidationFailed
from mh_platform.core.suppression import suppress_counts, suppress_table


def extended(table):
    grid = [list(r) + [sum(r)] for r in table]
    grid.append([sum(col) for col in zip(*table, strict=True)] + [sum(map(sum, table))])
    return grid


def published(t):
    rows = [list(r) + [t.row_totals[i]] for i, r in enumerate(t.cells)]
    rows.append(list(t.col_totals) + [t.grand_total])
    return rows


def feasible_range(table, t, pos):
    """Min and max of a hidden entry over all non-negative tables that publish the same numbers (LP)."""
    grid, pub = extended(table), published(t)
    R, C = len(grid), len(grid[0])
    hidden = [(r, c) for r in range(R) for c in range(C) if pub[r][c] is None]
    idx = {p: i for i, p in enumerate(hidden)}
    a_eq, b_eq = [], []

    def constraint(terms):  # sum(sign * entry) == 0, entries known or unknown
        row, const = np.zeros(len(hidden)), 0.0
        for sign, p in terms:
            if p in idx:
                row[idx[p]] += sign
            else:
                const -= sign * grid[p[0]][p[1]]
        a_eq.append(row)
        b_eq.append(const)

    for r in range(R):
        constraint([(1, (r, c)) for c in range(C - 1)] + [(-1, (r, C - 1))])
    for c in range(C):
        constraint([(1, (r, c)) for r in range(R - 1)] + [(-1, (R - 1, c))])
    obj = np.zeros(len(hidden))
    obj[idx[pos]] = 1
    lo = linprog(obj, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    hi = linprog(-obj, A_eq=a_eq, b_eq=b_eq, bounds=(0, None), method="highs")
    assert lo.status == 0 and hi.status in (0, 3)  # 3: unbounded above (everything around it hidden too)
    return lo.fun, (float("inf") if hi.status == 3 else -hi.fun)


def test_example_schools_by_level():
    table = [[12, 3, 0], [40, 9, 6], [33, 7, 8]]  # rows: schools; columns: yellow, orange, red
    t = suppress_table(table)
    assert t.cells[0][1] is None and (0, 1) in t.primary
    assert t.cells[0][2] == 0  # a zero names nobody
    hidden_in_row0 = [c for c in t.cells[0] if c is None]
    assert len(hidden_in_row0) + (t.row_totals[0] is None) >= 2
    for p in t.primary:
        lo, hi = feasible_range(table, t, p)
        assert hi - lo >= 1


def test_nothing_small_nothing_hidden():
    t = suppress_table([[5, 6], [7, 0]])
    assert t.primary == t.complementary == frozenset()
    assert t.cells == ((5, 6), (7, 0)) and t.grand_total == 18


def test_small_totals_are_hidden_too():
    t = suppress_table([[1, 0], [0, 2]])
    assert t.grand_total is None and t.row_totals == (None, None)


def test_suppress_zeros_option():
    assert suppress_table([[0, 10], [10, 10]]).primary == frozenset()
    assert (0, 0) in suppress_table([[0, 10], [10, 10]], suppress_zeros=True).primary


def test_one_way_counts_get_a_complement():
    counts, total = suppress_counts({"red": 3, "orange": 10, "yellow": 20})
    assert counts == {"red": None, "orange": None, "yellow": 20} and total == 33
    counts, total = suppress_counts({"a": 7, "b": 8})
    assert counts == {"a": 7, "b": 8} and total == 15
    assert suppress_counts({}) == ({}, 0)


@pytest.mark.parametrize("bad", [[], [[]], [[1, 2], [3]], [[-1]], [[1.5]], [[True]]])
def test_bad_tables(bad):
    with pytest.raises(ValidationFailed):
        suppress_table(bad)


def test_bad_threshold():
    with pytest.raises(ValidationFailed):
        suppress_table([[1]], threshold=0)


small = st.integers(min_value=0, max_value=12)
tables = st.integers(1, 5).flatmap(lambda r: st.integers(1, 5).flatmap(
    lambda c: st.lists(st.lists(small, min_size=c, max_size=c), min_size=r, max_size=r)))


@settings(max_examples=60, deadline=None)
@given(tables)
def test_no_primary_cell_is_recoverable(table):
    t = suppress_table(table)
    grid = extended(table)
    pub = published(t)
    for r, row in enumerate(grid):
        for c, v in enumerate(row):
            small_v = 0 < v < 5
            assert (pub[r][c] is None) >= small_v  # every small entry hidden
            if pub[r][c] is not None:
                assert pub[r][c] == v  # published entries are true
    for p in t.primary:
        lo, hi = feasible_range(table, t, p)
        assert hi - lo >= 1 - 1e-9, (table, p, lo, hi)
