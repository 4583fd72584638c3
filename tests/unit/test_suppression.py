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


# --------------------------------------------------------------------------- units × linked figures


def test_linked_counts_hide_a_unit_whole_so_a_shown_figure_cannot_pin_a_hidden_one():
    from mh_platform.core.suppression import suppress_linked_counts

    # school A: 1 student, who refused; school B: 12, all consented (eligible, consented, started, completed, readmin)
    rows, totals = suppress_linked_counts([[1, 0, 0, 0, 0], [12, 12, 0, 0, 0]])
    # per figure alone, A's consented 0 would be shown: with the total 12 and B's 12 hidden as the
    # complement, eligible_A <= 13 - 12 = 1 (so exactly 1) and consented_A = 0 told the refusal
    assert rows == [[None] * 5, [None] * 5]
    assert totals == [13, 12, 0, 0, 0]


def test_linked_counts_show_what_needs_no_hiding_and_hide_a_lone_unit_with_its_total():
    from mh_platform.core.suppression import suppress_linked_counts

    assert suppress_linked_counts([[20, 18, 10, 5, 0], [30, 25, 20, 20, 0]]) == (
        [[20, 18, 10, 5, 0], [30, 25, 20, 20, 0]], [50, 43, 30, 25, 0])
    assert suppress_linked_counts([[3, 3, 1, 0, 0]]) == ([[None] * 5], [None] * 5)
    assert suppress_linked_counts([]) == ([], [])
    # a readministration count of 1 hides its unit whole; the total of that figure is 1 as well, so the
    # totals are hidden whole too, and with no total shown the other units need no complement
    assert suppress_linked_counts([[20, 18, 10, 5, 0], [40, 30, 20, 10, 1], [50, 45, 40, 30, 0]]) == (
        [[20, 18, 10, 5, 0], [None] * 5, [50, 45, 40, 30, 0]], [None] * 5)
    # with the totals shown, the smallest other unit is the complement, hidden whole
    assert suppress_linked_counts([[20, 18, 10, 5, 0], [40, 30, 20, 10, 1], [50, 45, 40, 30, 5]]) == (
        [[None] * 5, [None] * 5, [50, 45, 40, 30, 5]], [110, 93, 70, 45, 6])


def test_linked_counts_invariants_on_random_tables():
    import random

    from mh_platform.core.suppression import suppress_linked_counts

    rng = random.Random(19)
    for _ in range(500):
        n = rng.randint(1, 7)
        table = []
        for _ in range(n):
            e = rng.choice([0, 1, 2, 3, 4, 5, 6, 9, 15, 40])
            c = rng.randint(0, e)
            st = rng.randint(0, c)
            co = rng.randint(0, st)
            table.append([e, c, st, co, rng.randint(0, st)])
        rows, totals = suppress_linked_counts(table)
        for r, pub in zip(table, rows, strict=True):
            assert pub == r or pub == [None] * 5  # a unit is shown whole or hidden whole
            assert all(p is None for v, p in zip(r, pub, strict=True) if 0 < v < 5)  # every 1-4 hidden
        for j in range(5):
            hidden = [i for i in range(n) if rows[i][j] is None]
            assert totals[j] is None or len(hidden) != 1  # no lone hidden entry against a shown total
            if totals[j] is not None:
                assert totals[j] == sum(r[j] for r in table)
                assert not 0 < totals[j] < 5
