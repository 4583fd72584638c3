"""Element ids of an HTML page: duplicates, and labels whose ``for`` points at no control of their own form."""

from __future__ import annotations

from collections import Counter
from html.parser import HTMLParser


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: list[str] = []
        self.form_of: dict[str, int | None] = {}  # id -> index of the enclosing form
        self.labels: list[tuple[str, int | None]] = []
        self._form: int | None = None
        self._forms = 0

    def handle_starttag(self, tag, attrs):  # noqa: ANN001
        a = dict(attrs)
        if tag == "form":
            self._forms += 1
            self._form = self._forms
        if a.get("id"):
            self.ids.append(a["id"])
            self.form_of.setdefault(a["id"], self._form)
        if tag == "label" and a.get("for"):
            self.labels.append((a["for"], self._form))

    def handle_endtag(self, tag):  # noqa: ANN001
        if tag == "form":
            self._form = None


def duplicate_ids(html: str) -> list[str]:
    p = _Ids()
    p.feed(html)
    return sorted(k for k, n in Counter(p.ids).items() if n > 1)


def stray_labels(html: str) -> list[str]:
    """Labels whose ``for`` names no element, or an element outside the label's own form."""
    p = _Ids()
    p.feed(html)
    return [f for f, form in p.labels if f not in p.form_of or p.form_of[f] != form]


def assert_clean(html: str, where: str = "") -> None:
    assert duplicate_ids(html) == [], (where, duplicate_ids(html))
    assert stray_labels(html) == [], (where, stray_labels(html))
