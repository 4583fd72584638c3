"""Helpers for the cross-cutting security tests (T3, T5, T11): unique canary strings and a fast
multi-pattern scanner that looks for each canary as UTF-8, UTF-16LE, hex (lower and upper case)
and base64 (all three byte alignments) in arbitrary bytes.

The scanner builds every pattern's first 8 bytes into a sorted array, slides an 8-byte window over
the haystack with numpy, and confirms each candidate with a full comparison — linear in the file
size whatever the number of canaries (thousands of canaries × ~8 forms).
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

WINDOW = 8


def forms(canary: str) -> list[tuple[str, bytes]]:
    """Every byte form a leaked canary could take in a file."""
    raw = canary.encode("utf-8")
    out = [("utf8", raw), ("utf16le", canary.encode("utf-16-le")), ("hex", raw.hex().encode()),
           ("HEX", raw.hex().upper().encode())]
    escaped = json.dumps(canary)[1:-1].encode()  # inside a JSON document written with ensure_ascii
    if escaped != raw:
        out.append(("json-escaped", escaped))
        out.append(("json-escaped-in-copy", escaped.replace(b"\\", b"\\\\")))  # pg_dump COPY text doubles "\\"
    for k in range(3):  # base64 of the canary at each alignment inside a longer encoded value
        enc = base64.b64encode(b"\x00" * k + raw)
        start = 4 if k else 0
        end = len(enc) - 4 if (k + len(raw)) % 3 else len(enc)
        core = enc[start:end]
        if len(core) >= WINDOW:
            out.append((f"base64@{k}", core))
        urlsafe = core.replace(b"+", b"-").replace(b"/", b"_")
        if urlsafe != core and len(urlsafe) >= WINDOW:
            out.append((f"base64url@{k}", urlsafe))
    for name, p in out:
        assert len(p) >= WINDOW, (canary, name)
    return out


def _windows(data: bytes) -> np.ndarray:
    """Every 8-byte window of ``data`` as one little-endian uint64."""
    a = np.frombuffer(data, dtype=np.uint8)
    n = len(a) - WINDOW + 1
    if n <= 0:
        return np.zeros(0, dtype=np.uint64)
    w = np.zeros(n, dtype=np.uint64)
    for i in range(WINDOW):
        w |= a[i:i + n].astype(np.uint64) << np.uint64(8 * i)
    return w


@dataclass
class Hit:
    canary: str
    form: str
    where: str
    offset: int


@dataclass
class Scanner:
    canaries: list[str]
    _patterns: dict[int, list[tuple[bytes, str, str]]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for c in self.canaries:
            for name, p in forms(c):
                key = int(np.frombuffer(p[:WINDOW], dtype="<u8")[0])
                self._patterns.setdefault(key, []).append((p, c, name))
        self._keys = np.array(sorted(self._patterns), dtype=np.uint64)

    @property
    def pattern_count(self) -> int:
        return sum(len(v) for v in self._patterns.values())

    def scan(self, data: bytes, where: str) -> list[Hit]:
        hits: list[Hit] = []
        w = _windows(data)
        if len(w) == 0:
            return hits
        idx = np.nonzero(np.isin(w, self._keys))[0]
        for pos in idx.tolist():
            for p, c, name in self._patterns[int(w[pos])]:
                if data[pos:pos + len(p)] == p:
                    hits.append(Hit(c, name, where, pos))
        return hits


class Canaries:
    """Unique canary strings by kind; every value issued is remembered with the column it went to."""

    def __init__(self, tag: str = "") -> None:
        self._n = itertools.count(1)
        self.issued: dict[str, str] = {}  # canary -> "table.column"
        self.tag = tag

    def _keep(self, value: str, target: str) -> str:
        assert value not in self.issued, value
        self.issued[value] = target
        return value

    def text(self, target: str, label: str = "记录") -> str:
        n = next(self._n)
        return self._keep(f"金丝雀{label}{self.tag}{n:06d}：内容仅供测试", target)

    def name(self, target: str) -> str:
        n = next(self._n)
        digits = "零一二三四五六七八九"
        return self._keep("雀" + "".join(digits[int(d)] for d in f"{n:06d}") + "名", target)

    def phone(self, target: str) -> str:
        return self._keep(f"13{next(self._n) + 700_000_000:09d}", target)

    def student_number(self, target: str) -> str:
        return self._keep(f"G2177{next(self._n):08d}", target)

    def id_number(self, target: str) -> str:
        return self._keep(f"2111032012{next(self._n):08d}", target)

    def given(self, value: str, target: str) -> str:
        return self._keep(value, target)

    def by_target(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for c, t in self.issued.items():
            out.setdefault(t, []).append(c)
        return out


def describe(hits: Iterable[Hit], limit: int = 10) -> str:
    hits = list(hits)
    return f"{len(hits)} hits, e.g. " + "; ".join(f"{h.canary!r} as {h.form} in {h.where}@{h.offset}"
                                                  for h in hits[:limit])
