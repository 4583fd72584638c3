"""Tables written as CSV or XLSX files that a spreadsheet opens safely (security test T16).

A text cell that begins with a formula trigger — ``= + - @``, tab, carriage return, NUL, or their
full-width forms ``＝ ＋ － ＠`` (which CJK input methods type and some spreadsheet locales read as
formulas) — is written with a leading apostrophe (OWASP's CSV-injection advice), in CSV and XLSX
alike, so the two files hold the same text. XLSX cells are always written as values with an explicit
type (text as a shared string, numbers as numbers): openpyxl would otherwise store a string that
begins with ``=`` as a formula. Numbers are never escaped (``-3`` stays a number). XML cannot hold
most control characters, so in XLSX each becomes U+FFFD.

CSV is RFC 4180 (``\\r\\n`` line ends, quotes doubled) in UTF-8 with a byte-order mark, which is
what makes Excel on a Chinese Windows read UTF-8 rather than GBK.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\0", "＝", "＋", "－", "＠")

Cell = str | int | float | None


def neutralise(value: Cell) -> Cell:
    """A cell as it may be written: text starting with a formula trigger gets a leading apostrophe;
    numbers and None (an empty cell) are returned as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def _check(rows: Sequence[Sequence[Any]]) -> list[list[Cell]]:
    out: list[list[Cell]] = []
    for r in rows:
        row: list[Cell] = []
        for v in r:
            if isinstance(v, bool) or not (v is None or isinstance(v, str | int | float)):
                raise TypeError(f"a table cell is text, a number or empty, not {type(v).__name__}")
            row.append(neutralise(v))
        out.append(row)
    return out


def to_csv(rows: Sequence[Sequence[Any]]) -> bytes:
    """RFC 4180 CSV in UTF-8 with a byte-order mark; empty cells stay empty."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    for row in _check(rows):
        w.writerow(["" if v is None else v for v in row])
    return b"\xef\xbb\xbf" + buf.getvalue().encode("utf-8")


def to_xlsx(rows: Sequence[Sequence[Any]], *, sheet: str = "Sheet1") -> bytes:
    """One worksheet; every cell a typed value, never a formula."""
    from openpyxl import Workbook
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE, TYPE_NUMERIC, TYPE_STRING

    wb = Workbook()
    ws = wb.active
    ws.title = sheet[:31]
    for i, row in enumerate(_check(rows), start=1):
        for j, v in enumerate(row, start=1):
            if v is None:
                continue
            c = ws.cell(row=i, column=j)
            # XML cannot hold most control characters: each becomes U+FFFD (the CSV keeps them)
            c.value = ILLEGAL_CHARACTERS_RE.sub("\ufffd", v) if isinstance(v, str) else v
            c.data_type = TYPE_STRING if isinstance(v, str) else TYPE_NUMERIC  # never "f" (formula)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
