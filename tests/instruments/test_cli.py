"""`mhp instruments` through the installed entry point (subprocess), as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mh_platform.core.instruments import load_instrument
from mh_platform.core.scoring import score

ROOT = Path(__file__).resolve().parents[2]
MHP = ROOT / ".venv" / "bin" / "mhp"
KEYS = ["instrument", "total", "status", "band", "subscales", "critical", "critical_unanswered",
        "short_forms", "errors"]


def mhp(*args: str, stdin: str = "", check: bool = True) -> subprocess.CompletedProcess:
    cmd = [str(MHP), *args] if MHP.exists() else [sys.executable, "-m", "mh_platform.cli", *args]
    p = subprocess.run(cmd, input=stdin.encode("utf-8"), capture_output=True, timeout=120, check=False)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}: {p.stderr.decode()}")
    return p


def _lines(p: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(x) for x in p.stdout.decode("utf-8").splitlines()]


MALFORMED = [
    '{"answers": {"1": 0, "2": 0, "3": 0, "4": 0, "5": 0, "6": 0, "7": 0, "8": 0, "9": 0}}',
    "this is not json",
    "[1, 2, 3]",
    '{"no_answers": 1}',
    '{"answers": {"1": 7}}',
    '{"answers": {"1": "2", "2": true, "3": 1.5}}',
    '{"answers": {"42": 1}}',
    "",
    '{"answers": {"1": 3, "2": 3, "3": 3, "4": 3, "5": 3, "6": 3, "7": 3, "8": 3, "9": 3}}',
]


def _random_answers(n: int = 3000) -> list[dict]:
    import random

    rnd = random.Random(7)
    out = []
    for _ in range(n):
        a = {str(i): rnd.choice([0, 0, 1, 1, 2, 3, None]) for i in range(1, 11)}
        if rnd.random() < 0.02:
            a[str(rnd.randint(1, 10))] = rnd.choice([4, -1, "x"])
        out.append(a)
    return out


@pytest.fixture(scope="module")
def phq9_run():
    """One subprocess run of `mhp instruments score phq9` shared by the tests below (startup is slow)."""
    first = ['{"answers": {"1": 2, "2": 0, "9": null}}', json.dumps({"answers": {str(i): 1 for i in range(1, 10)}})]
    rand = _random_answers()
    stdin = "\n".join(first + MALFORMED + [json.dumps({"answers": a}) for a in rand]) + "\n"
    out = _lines(mhp("instruments", "score", "phq9", stdin=stdin))
    assert len(out) == len(first) + len(MALFORMED) + len(rand), "one output line per input line"
    return out[:2], out[2:2 + len(MALFORMED)], out[2 + len(MALFORMED):], rand


def test_score_phq9_exact_shape(phq9_run):
    o = phq9_run[0][0]
    assert list(o) == KEYS
    assert o["instrument"] == "phq9"
    assert o["total"] is None and o["status"] == "invalid" and o["band"] is None
    assert o["critical"] == [] and o["critical_unanswered"] == [9]
    assert o["short_forms"] == {"phq2": {"score": 2, "positive": False}}
    assert o["subscales"] == {} and o["errors"] == []


def test_score_phq9_band_object_and_critical(phq9_run):
    o = phq9_run[0][1]
    assert o["total"] == 9 and o["status"] == "complete"
    assert o["band"] == {"id": "mild", "en": "Mild", "zh": "轻度"}
    assert o["critical"] == [9]


def test_malformed_lines_give_errors_and_the_run_goes_on(phq9_run):
    out = phq9_run[1]
    assert all(list(o) == KEYS for o in out)
    assert out[0]["total"] == 0 and out[0]["errors"] == []
    for i in (1, 2, 3, 7):
        assert out[i]["status"] == "invalid" and out[i]["errors"], out[i]
        assert out[i]["errors"][0].startswith(f"line {i + 3}:")  # line numbers count from the first input line
    assert out[4]["errors"] == ["item 1: 7 is not an option (0, 1, 2, 3)"]
    assert len(out[5]["errors"]) == 3
    assert out[6]["errors"] == ["unknown item '42'"]
    assert out[8]["total"] == 27 and out[8]["band"]["id"] == "severe" and out[8]["critical"] == [9]


def test_cli_matches_the_engine_line_by_line(phq9_run):
    inst = load_instrument("phq9")
    _first, _bad, out, rand = phq9_run
    assert out == [score(inst, a).to_json() for a in rand]


def test_score_asq_yes_no_answers():
    stdin = '{"answers": {"1": "yes", "2": "no", "3": "no", "4": "no", "5": "yes"}}\n' \
            '{"answers": {"1": "no", "2": "no", "3": "no", "4": "no"}}\n'
    a, b = _lines(mhp("instruments", "score", "asq", stdin=stdin))
    assert a["band"]["id"] == "acute_positive" and a["critical"] == [1, 5]
    assert b["band"]["id"] == "negative" and b["critical_unanswered"] == []


def test_score_with_variant_and_cutoff_set():
    line = '{"answers": {"1": 3, "2": 3, "3": 2, "4": 2, "5": 2}}\n'
    (o,) = _lines(mhp("instruments", "score", "who5", "--variant", "percentage", stdin=line))
    assert o["total"] == 48 and o["band"]["id"] == "poor"


def test_unknown_instrument_is_one_clear_error_line():
    p = mhp("instruments", "score", "nope", stdin="", check=False)
    assert p.returncode != 0
    assert p.stderr.decode().startswith("error:") and "Traceback" not in p.stderr.decode()


def test_list_json():
    data = json.loads(mhp("instruments", "list", "--json").stdout)
    ids = {d["id"] for d in data}
    assert {"phq9", "gad7", "asq", "who5", "phq_a"} <= ids
    phq9 = next(d for d in data if d["id"] == "phq9")
    assert phq9["bands"] == ["minimal", "mild", "moderate", "moderately_severe", "severe"]
    assert phq9["total_range"] == [0, 27] and phq9["critical_items"] == [9]


def test_validate_all_and_a_broken_file(tmp_path):
    p = mhp("instruments", "validate")
    assert "ok " in p.stdout.decode()
    bad = tmp_path / "phq9.toml"
    text = (ROOT / "screening_instruments" / "phq9.toml").read_text(encoding="utf-8")
    bad.write_text(text.replace('{ id = "moderate", min = 10,', '{ id = "moderate", min = 11,'), encoding="utf-8")
    p = mhp("instruments", "validate", str(bad), check=False)
    assert p.returncode != 0
    assert "gap between bands mild and moderate" in p.stderr.decode()


def test_fhir_command_prints_a_questionnaire():
    q = json.loads(mhp("instruments", "fhir", "gad7").stdout)
    assert q["resourceType"] == "Questionnaire" and q["code"][0]["code"] == "69737-5"

# The 1,000,000-line throughput run is a benchmark (bench/bench_cli_score.py), not a timed test.
