"""Every golden case of every shipped instrument (screening_instruments/golden/*.cases.toml).

Expectations were worked by hand from the published scoring rules; only the keys a case lists are
checked (the format is described in screening_instruments/README.md). New files are picked up
automatically.
"""

from __future__ import annotations

import json
import tomllib

import numpy as np
import pytest

from mh_platform.core.instruments import DEFAULT_DIR, load_all, load_instrument
from mh_platform.core.scoring import STATUS_CODES, encode, score, score_many

GOLDEN = DEFAULT_DIR / "golden"
NONE = "none"


def _cases() -> list:
    out = []
    for path in sorted(GOLDEN.glob("*.cases.toml")):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        for i, case in enumerate(data.get("cases", [])):
            out.append(pytest.param(data["instrument"], case, id=f"{path.name.split('.')[0]}[{i}] {case['name']}"))
    return out


CASES = _cases()


def _answers(case: dict) -> dict:
    if "answers_json" in case:
        return json.loads(case["answers_json"])
    return dict(case.get("answers", {}))


def _none(v):
    return None if v == NONE else v


def test_every_shipped_instrument_has_golden_cases():
    have = {p.name.split(".")[0] for p in GOLDEN.glob("*.cases.toml")}
    missing = set(load_all()) - have
    assert not missing, f"instruments without golden cases: {sorted(missing)}"


def test_golden_files_name_their_instrument():
    for path in GOLDEN.glob("*.cases.toml"):
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        assert data["instrument"] == path.name.split(".")[0]
        assert data.get("cases"), f"{path.name} has no cases"


@pytest.mark.parametrize(("instrument_id", "case"), CASES)
def test_golden_case(instrument_id, case):
    inst = load_instrument(instrument_id)
    answers = _answers(case)
    before = json.dumps(answers, sort_keys=True, default=str)
    r = score(inst, answers, variant=case.get("variant"), cutoff_set=case.get("cutoff_set"))
    assert json.dumps(answers, sort_keys=True, default=str) == before, "answers were mutated"
    exp = case["expect"]
    if "total" in exp:
        assert r.total == _none(exp["total"]), r
    if "status" in exp:
        assert r.status == exp["status"], r
    if "band" in exp:
        assert (r.band.id if r.band else None) == _none(exp["band"]), r
    if "critical" in exp:
        assert r.critical == exp["critical"], r
    if "critical_unanswered" in exp:
        assert r.critical_unanswered == exp["critical_unanswered"], r
    for sid, want in exp.get("subscales", {}).items():
        got = r.subscales[sid]
        if "score" in want:
            assert got.score == _none(want["score"]), (sid, r)
        if "positive" in want:
            assert got.positive == _none(want["positive"]), (sid, r)
        if "band" in want:
            assert (got.band.id if got.band else None) == _none(want["band"]), (sid, r)
    for sid, want in exp.get("short_forms", {}).items():
        s, pos = r.short_forms[sid]
        if "score" in want:
            assert s == _none(want["score"]), (sid, r)
        if "positive" in want:
            assert pos == _none(want["positive"]), (sid, r)
    assert len(r.errors) == exp.get("errors", 0), r.errors
    # invariants of every result
    if r.status == "invalid":
        assert r.total is None and r.band is None
    else:
        assert r.total is not None and r.band is not None and r.band.contains(r.total)
    assert not set(r.critical) & set(r.critical_unanswered)


def _batch_representable(param) -> bool:
    """A batch matrix holds numbers per known item: cases about unknown items or wrongly typed
    values exercise the single-response path only (they are run there, above)."""
    instrument_id, case = param.values
    inst = load_instrument(instrument_id)
    answers = _answers(case)
    r = score(inst, answers, variant=case.get("variant"), cutoff_set=case.get("cutoff_set"))
    if r.errors and not all("is not an option" in e for e in r.errors):
        return False
    return not any(isinstance(v, bool | float) or (isinstance(v, str) and inst.item(int(k)).kind != "yes_no")
                   for k, v in answers.items() if str(k).isdigit() and 1 <= int(k) <= inst.n_items)


BATCH_CASES = [c for c in CASES if _batch_representable(c)]


def test_most_golden_cases_also_run_on_the_batch_path():
    assert len(BATCH_CASES) >= 0.9 * len(CASES)


@pytest.mark.parametrize(("instrument_id", "case"), BATCH_CASES)
def test_golden_case_batch_path_agrees(instrument_id, case):
    """score_many on the encoded row gives the same total/status/band/critical as score."""
    inst = load_instrument(instrument_id)
    answers = _answers(case)
    r = score(inst, answers, variant=case.get("variant"), cutoff_set=case.get("cutoff_set"))
    b = score_many(inst, encode(inst, answers)[None, :], variant=case.get("variant"),
                   cutoff_set=case.get("cutoff_set"))
    t = b.total[0]
    assert (None if np.isnan(t) else int(t)) == r.total
    assert STATUS_CODES[int(b.status[0])] == r.status
    assert b.result(0).to_json() == {**r.to_json(), "errors": b.result(0).errors}
