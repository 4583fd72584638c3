"""`mhp instruments score phq9` over 1,000,000 JSON lines (issue: under a minute on this machine),
against the baseline of the same process only parsing and echoing the lines (json.loads + dumps)."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tempfile
import time

from bench.common import result

N = 1_000_000
ECHO = "import sys, json\nfor line in sys.stdin:\n    sys.stdout.write(json.dumps(json.loads(line)) + '\\n')\n"


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as d:
        f = pathlib.Path(d) / "in.jsonl"
        lines = [json.dumps({"answers": {str(i): (i * k) % 4 for i in range(1, 10)}}) for k in range(7)]
        f.write_text("\n".join(lines[i % 7] for i in range(N)) + "\n")
        mhp = pathlib.Path(sys.executable).with_name("mhp")
        t0 = time.perf_counter()
        with f.open("rb") as fin:
            p = subprocess.run([str(mhp), "instruments", "score", "phq9"], stdin=fin, stdout=subprocess.PIPE,
                               check=True)
        t_score = time.perf_counter() - t0
        assert p.stdout.count(b"\n") == N
        t0 = time.perf_counter()
        with f.open("rb") as fin:
            subprocess.run([sys.executable, "-c", ECHO], stdin=fin, stdout=subprocess.DEVNULL, check=True)
        t_echo = time.perf_counter() - t0
    return [
        result("cli_score_1m_lines", "s", t_score, 60.0, 1.0, higher_is_better=False,
               note="1,000,000 PHQ-9 lines through `mhp instruments score phq9`; baseline = the 60 s limit"),
        result("cli_score_vs_json_echo", "lines/s", N / t_score, N / t_echo, 0.5,
               note="scoring CLI throughput vs a bare json.loads/dumps echo of the same lines"),
    ]
