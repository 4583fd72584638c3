"""Property tests over every shipped instrument: totals stay in range, bands tile the range,
and the vectorised path agrees with the single-response path."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mh_platform.core.instruments import YES_NO_CODES, check_bands, load_all
from mh_platform.core.scoring import STATUS_CODES, score, score_many

INSTRUMENTS = load_all()
IDS = sorted(INSTRUMENTS)
SETTINGS = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


_STRATS: dict = {}


def _answer_strategy(inst, p_missing=0.15):
    """Valid answers (printed values) with some items left out (strategies built once)."""
    key = (inst.id, bool(p_missing))
    if key not in _STRATS:
        _STRATS[key] = _build_strategy(inst, p_missing)
    return _STRATS[key]


def _build_strategy(inst, p_missing):
    per_item = []
    for it in inst.items:
        vals = [o.value for o in it.options]
        per_item.append(st.one_of(st.sampled_from(vals), st.none()) if p_missing else st.sampled_from(vals))
    return st.tuples(*per_item).map(lambda vs: {str(i + 1): v for i, v in enumerate(vs) if v is not None})


@pytest.mark.parametrize("iid", IDS)
def test_bands_cover_the_total_range_without_gap_or_overlap(iid):
    inst = INSTRUMENTS[iid]
    for cut in inst.cutoff_sets:
        lo, hi = inst.total_range(cut.variant)
        assert check_bands(cut.bands, lo, hi, cut.id) == []
        for t in range(lo, hi + 1):  # every possible total falls in exactly one band
            assert sum(b.contains(t) for b in cut.bands) == 1, (cut.id, t)


MULTI_BAND_IDS = [i for i in IDS if len(INSTRUMENTS[i].cutoff_set().bands) >= 2]


@pytest.mark.parametrize("iid", MULTI_BAND_IDS)
def test_check_bands_detects_gap_and_overlap(iid):
    inst = INSTRUMENTS[iid]
    cut = inst.cutoff_set()
    lo, hi = inst.total_range(cut.variant)
    from dataclasses import replace

    b = list(cut.bands)
    gap = [*b[:1], replace(b[1], min=b[1].min + 1), *b[2:]] if b[1].min < b[1].max else None
    overlap = [*b[:1], replace(b[1], min=b[1].min - 1), *b[2:]]
    if gap:
        assert any("gap" in m for m in check_bands(tuple(gap), lo, hi, "x"))
    assert any("overlap" in m for m in check_bands(tuple(overlap), lo, hi, "x"))


@pytest.mark.parametrize("iid", IDS)
@SETTINGS
@given(data=st.data())
def test_totals_stay_in_range(iid, data):
    inst = INSTRUMENTS[iid]
    answers = data.draw(_answer_strategy(inst))
    for v in inst.variants:
        r = score(inst, answers, variant=v.id)
        lo, hi = inst.total_range(v.id)
        assert r.status in STATUS_CODES
        assert not r.errors
        if r.total is None:
            assert r.status == "invalid" and r.band is None
        else:
            assert lo <= r.total <= hi
            assert r.band is not None and r.band.contains(r.total)
        for sid, sr in r.subscales.items():
            if sr.score is not None:
                slo, shi = inst.subscale_range(sid, v)
                assert slo <= sr.score <= shi


@pytest.mark.parametrize("iid", IDS)
@SETTINGS
@given(data=st.data())
def test_complete_forms_are_complete_and_critical_items_follow_raw_answers(iid, data):
    inst = INSTRUMENTS[iid]
    answers = data.draw(_answer_strategy(inst, p_missing=0))
    r = score(inst, answers)
    assert r.status == "complete"
    assert r.critical_unanswered == []
    for c in inst.critical_items:
        assert (c.item in r.critical) == (answers[str(c.item)] in c.levels)


def _code(item, v):
    if v is None:
        return np.nan
    return float(YES_NO_CODES[v]) if item.kind == "yes_no" else float(v)


@pytest.mark.parametrize("iid", IDS)
@SETTINGS
@given(data=st.data())
def test_score_many_equals_score_row_by_row(iid, data):
    inst = INSTRUMENTS[iid]
    drawn = data.draw(st.lists(st.tuples(_answer_strategy(inst, p_missing=0.3), st.integers(0, 9),
                                         st.integers(1, inst.n_items)), min_size=1, max_size=6))
    rows, answers_list = [], []
    for answers, coin, k in drawn:
        answers = dict(answers)
        if coin == 0:  # now and then an invalid value
            it = inst.item(k)
            answers[str(k)] = 99 if it.kind == "choice" else "maybe"
        answers_list.append(answers)
        row = np.full(inst.n_items, np.nan)
        for key, v in answers.items():
            it = inst.item(int(key))
            row[int(key) - 1] = -7.0 if v in (99, "maybe") else _code(it, v)
        rows.append(row)
    variant = data.draw(st.sampled_from([v.id for v in inst.variants]))
    b = score_many(inst, np.array(rows), variant=variant, chunk=5)  # small chunk: exercise chunking
    concerns = b.concern_levels()
    for i, answers in enumerate(answers_list):
        r = score(inst, answers, variant=variant)
        got = b.result(i)
        assert got.total == r.total, (i, answers)
        assert got.status == r.status
        assert (got.band.id if got.band else None) == (r.band.id if r.band else None)
        assert got.critical == r.critical
        assert got.critical_unanswered == r.critical_unanswered
        assert {k: (v.score, v.positive) for k, v in got.subscales.items()} == \
               {k: (v.score, v.positive) for k, v in r.subscales.items()}
        assert dict(got.short_forms) == dict(r.short_forms)
        assert dict(got.critical_levels) == dict(r.critical_levels)
        assert concerns[i] == (r.concern.value if r.concern else None)  # what the paper import stores
        assert bool(got.errors) == bool(r.errors)
