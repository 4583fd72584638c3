"""`make bench`: run every bench/bench_*.py module's ``run()`` and write bench/results.json.

Usage: python -m bench.run [NAME_SUBSTRING ...]
"""

from __future__ import annotations

import importlib
import json
import pathlib
import sys
import traceback

HERE = pathlib.Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    wanted = argv[1:]
    rows: list[dict] = []
    for path in sorted(HERE.glob("bench_*.py")):
        if wanted and not any(w in path.stem for w in wanted):
            continue
        print(f"== {path.stem}", flush=True)
        try:
            mod = importlib.import_module(f"bench.{path.stem}")
            got = mod.run()
        except Exception:  # noqa: BLE001 - one failing bench must not hide the others
            traceback.print_exc()
            got = [{"name": path.stem, "unit": "error", "value": 0, "baseline": 0, "ratio": 0,
                    "target": 0, "passed": False}]
        for row in got:
            print(f"   {row['name']}: {row['value']} {row['unit']} (baseline {row['baseline']}, "
                  f"ratio {row['ratio']}, target {row['target']}) {'PASS' if row['passed'] else 'FAIL'}",
                  flush=True)
        rows.extend(got)
    out = HERE / "results.json"
    if wanted and out.exists():  # a partial run updates only its own rows
        old = [r for r in json.loads(out.read_text()) if r["name"] not in {x["name"] for x in rows}]
        rows = old + rows
    out.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out} ({len(rows)} rows)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
