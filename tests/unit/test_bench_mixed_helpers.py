"""The pure helpers of the mixed-traffic benchmark (bench/bench_mixed.py): answer plans, the plan-file
line the wrk script reads, and the verdict that compares wrk's counts with the database."""

from __future__ import annotations

import random

import pytest

from bench.bench_mixed import (
    Answer,
    Page,
    answer_plan,
    parse_plan_line,
    parse_wrk_text,
    plan_line,
    request_kind,
    requests_per_student,
    verdict,
)
from mh_platform.core.instruments import load_instrument
from mh_platform.core.scoring import score

BATTERY = ("phq9", "gad7", "asq", "k10", "who5")


def _asked(inst_id: str, page: Page) -> None:
    """Every answer is an option; an item is asked exactly when its skip rule does not hold."""
    inst = load_instrument(inst_id)
    given = {a.item: a.value for a in page.answers}
    raw: dict[int, object] = {}
    for it in inst.items:
        skipped = it.skip is not None and it.skip.when.holds(raw)
        assert (it.number not in given) == skipped, (inst_id, it.number)
        if not skipped:
            assert it.response_set.option(given[it.number]) is not None
            raw[it.number] = given[it.number]


def test_plans_follow_skip_rules_and_stay_low_without_a_critical_kind() -> None:
    rng = random.Random(3)
    for _ in range(200):
        pages = answer_plan(rng, BATTERY)
        assert [p.instrument for p in pages] == list(BATTERY)
        for p in pages:
            _asked(p.instrument, p)
            assert not p.critical
            assert not score(load_instrument(p.instrument), p.as_dict()).critical
            assert all(2500 <= a.ms <= 9000 for a in p.answers)


@pytest.mark.parametrize(("kind", "inst_id", "item"), [("phq9_item9", "phq9", 9), ("asq_item1", "asq", 1)])
def test_a_critical_student_answers_exactly_one_critical_item(kind: str, inst_id: str, item: int) -> None:
    pages = answer_plan(random.Random(5), BATTERY, kind)
    crit = [(p.instrument, a.item) for p in pages for a in p.answers if a.critical]
    assert crit == [(inst_id, item)]
    page = next(p for p in pages if p.instrument == inst_id)
    _asked(inst_id, page)  # ASQ: a "yes" on item 1 makes item 5 asked
    assert score(load_instrument(inst_id), page.as_dict()).critical
    assert all(not score(load_instrument(p.instrument), p.as_dict()).critical for p in pages if p.instrument != inst_id)


def test_plan_line_round_trips_and_counts_requests() -> None:
    pages = answer_plan(random.Random(9), BATTERY, "asq_item1")
    line = plan_line("AB12CD34EF", pages)
    assert "\n" not in line and line.count("\t") == 1
    assert parse_plan_line(line) == ("AB12CD34EF", pages, False)
    resumed = plan_line("AB12CD34EF", pages[2:], resumed=True)
    assert resumed.endswith("\tr") and parse_plan_line(resumed) == ("AB12CD34EF", pages[2:], True)
    assert requests_per_student(pages) == 3 + 2 * len(BATTERY) + sum(len(p.answers) for p in pages)


def test_plan_line_refuses_tokens_that_would_break_the_file() -> None:
    page = Page("phq9", (Answer(1, 0, 3000),))
    with pytest.raises(ValueError, match="unsafe"):
        plan_line("AB\tCD", [page])
    with pytest.raises(ValueError, match="unsafe"):
        plan_line("AB;CD", [page])


def _wrk(**counts: int) -> dict:
    c = {"login_page_ok": 10, "login_ok": 10, "page_get_ok": 50, "answer_ok": 300, "page_post_ok": 50,
         "done_ok": 10, "battery_submitted": 10, "students_finished": 10, "inflight_at_stop": 2, "lost": 0,
         "exhausted": 0}
    c.update(counts)
    n = sum(v for k, v in c.items() if k.endswith(("_ok", "_bad")))
    return {"summary": {"requests": n, "err_connect": 0, "err_read": 0, "err_write": 0, "err_status": 0,
                        "err_timeout": 0}, "counts": c, "bad": {}}


DB = {"logins": 10, "completed": 10, "submitted": 50, "answers": 300}


def test_verdict_clean_round() -> None:
    assert verdict(_wrk(), DB, sample_checked=10, sample_mismatches=0) == []
    # a resumed login (pages submitted in set-up) is not a first use of the code
    assert verdict(_wrk(resumed_logins=3), {**DB, "logins": 7}, sample_checked=10, sample_mismatches=0) == []


def test_verdict_allows_what_was_in_flight_but_no_more() -> None:
    assert verdict(_wrk(), {**DB, "answers": 301, "submitted": 51}, sample_checked=10, sample_mismatches=0) == []
    # the last page's post in flight: its submit also completes the code
    assert verdict(_wrk(), {**DB, "answers": 301, "submitted": 51, "completed": 11}, sample_checked=10,
                   sample_mismatches=0) == []
    problems = verdict(_wrk(), {**DB, "completed": 11}, sample_checked=10, sample_mismatches=0)
    assert any("codes completed beyond" in p for p in problems)
    problems = verdict(_wrk(), {**DB, "answers": 302, "submitted": 51}, sample_checked=10, sample_mismatches=0)
    assert any("more than acknowledged" in p for p in problems)
    problems = verdict(_wrk(), {**DB, "answers": 303}, sample_checked=10, sample_mismatches=0)
    assert any(p.startswith("database answers") for p in problems)


def test_verdict_flags_missing_rows_errors_and_mismatches() -> None:
    problems = verdict(_wrk(), {**DB, "answers": 299}, sample_checked=10, sample_mismatches=0)
    assert any(p.startswith("database answers: +299") for p in problems)
    w = _wrk()
    w["summary"]["err_timeout"] = 1
    w["bad"] = {"answer:500": 1}
    problems = verdict(w, DB, sample_checked=10, sample_mismatches=2)
    assert any("err_timeout" in p for p in problems)
    assert any("answer:500" in p for p in problems)
    assert any("2 decrypted" in p for p in problems)
    assert verdict(_wrk(exhausted=3), DB, sample_checked=10, sample_mismatches=0) == ["exhausted=3"]
    assert verdict(_wrk(), DB, sample_checked=0, sample_mismatches=0) == ["only 0 finished students decrypted"]


def test_verdict_notices_when_the_script_and_wrk_disagree() -> None:
    w = _wrk()
    w["summary"]["requests"] += 1
    assert any("wrk counted" in p for p in verdict(w, DB, sample_checked=10, sample_mismatches=0))


@pytest.mark.parametrize(("method", "path", "kind"), [
    ("GET", "/s/", "login_page"), ("POST", "/s/", "login"), ("POST", "/s/answer", "answer"),
    ("GET", "/s/p/phq9", "page_get"), ("POST", "/s/p/who5", "page_post"), ("GET", "/s/done", "done"),
    ("GET", "/x", "other:GET /x"),
])
def test_request_kind(method: str, path: str, kind: str) -> None:
    assert request_kind(method, path) == kind


WRK_REPORT = """Running 5s test @ http://127.0.0.1:40000/s/
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    40.12ms   10.01ms 120.00ms   70.00%
    Req/Sec   400.00     50.00   500.00     60.00%
  4000 requests in 5.00s, 7.00MB read
  Socket errors: connect 0, read 2, write 1, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:    799.87
Transfer/sec:      1.40MB
"""


def test_parse_wrk_text() -> None:
    assert parse_wrk_text(WRK_REPORT) == {"rps": 799.87, "non_2xx_3xx": 7.0, "socket_errors": 6.0}
    clean = "\n".join(line for line in WRK_REPORT.splitlines() if "errors" not in line and "Non-2xx" not in line)
    assert parse_wrk_text(clean) == {"rps": 799.87, "non_2xx_3xx": 0.0, "socket_errors": 0.0}
    assert parse_wrk_text("") == {"rps": 0.0, "non_2xx_3xx": 0.0, "socket_errors": 0.0}
