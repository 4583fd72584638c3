"""Formula-safe CSV and XLSX tables (security test T16): no data cell can become a formula."""

from __future__ import annotations

import csv
import io

import openpyxl
import pytest

from mh_platform.core.spreadsheet import FORMULA_TRIGGERS, neutralise, to_csv, to_xlsx

HOSTILE = ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx", "\0x",
           "＝1+1", "＋1", "－1", "＠SUM(A1)"]


@pytest.mark.parametrize("text", HOSTILE)
def test_every_trigger_is_neutralised(text):
    assert text.startswith(FORMULA_TRIGGERS)
    assert neutralise(text) == "'" + text


@pytest.mark.parametrize("value", ["兴隆台第一中学", "a=b", " =x", "", 0, -3, 2.5, None])
def test_other_cells_are_kept_as_they_are(value):
    assert neutralise(value) == value


def test_csv_is_rfc4180_with_a_bom_and_round_trips_the_escaped_text():
    rows = [["单位", "n"], ["a,\"b\"\nc", 3], *[[t, 1] for t in HOSTILE], ["", None], ["neg", -1]]
    data = to_csv(rows)
    assert data.startswith(b"\xef\xbb\xbf") and b"\r\n" in data
    back = list(csv.reader(io.StringIO(data[3:].decode("utf-8"), newline="")))
    assert back[0] == ["单位", "n"] and back[1] == ["a,\"b\"\nc", "3"]
    assert [r[0] for r in back[2:-2]] == ["'" + t for t in HOSTILE]
    assert all(r[1] == "1" for r in back[2:-2]) and back[-2:] == [["", ""], ["neg", "-1"]]  # a number stays a number
    # no text cell of the parsed file begins with a trigger
    assert not any(c.startswith(FORMULA_TRIGGERS) for r in back[:-1] for c in r)


def test_xlsx_cells_are_typed_values_never_formulas():
    rows = [["单位", "n"], *[[t, 7] for t in HOSTILE], ["x", 2.5]]
    ws = openpyxl.load_workbook(io.BytesIO(to_xlsx(rows, sheet="completion"))).active
    assert ws.title == "completion"
    got = [[c.value for c in r] for r in ws.iter_rows()]
    assert all(c.data_type != "f" for r in ws.iter_rows() for c in r)
    assert [r[1] for r in got[1:]] == [7] * len(HOSTILE) + [2.5]
    # the same text as the CSV, except that XML cannot hold control characters (U+FFFD instead)
    expected = ["'" + t.replace("\0", "\ufffd") for t in HOSTILE]
    assert [r[0] for r in got[1:-1]] == expected


def test_only_text_numbers_and_empty_cells_are_written():
    for bad in (True, object(), b"x"):
        with pytest.raises(TypeError):
            to_csv([[bad]])
