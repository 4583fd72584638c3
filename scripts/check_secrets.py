"""T23: fail when the tracked files hold a secret that is not in the committed baseline as an audited
false positive (``.secrets.baseline``, every entry ``"is_secret": false``).

detect-secrets scans a copy of the baseline (``scan --baseline`` merges the current findings into it,
matching by file and hashed secret, so moved lines keep their audit) and this script reads the copy:
a finding without ``is_secret: false`` is new or unaudited and fails. The committed baseline is not
rewritten by ``make lint``; after a reviewed change run ``make secrets-baseline`` and audit the new
entries (``.venv/bin/detect-secrets audit .secrets.baseline``).

Usage: python scripts/check_secrets.py [--baseline .secrets.baseline]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import subprocess
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=str(REPO / ".secrets.baseline"))
    args = ap.parse_args(argv)
    exe = shutil.which("detect-secrets", path=str(pathlib.Path(sys.executable).parent)) or "detect-secrets"
    with tempfile.TemporaryDirectory() as tmp:
        copy = pathlib.Path(tmp) / "baseline.json"
        shutil.copyfile(args.baseline, copy)
        # the committed baseline is a tracked file too: its hashes are not secrets (the copy is skipped by itself)
        subprocess.run([exe, "scan", "--baseline", str(copy), "--exclude-files", r"^\.secrets\.baseline$"],  # noqa: S603
                       cwd=REPO, check=True)
        results = json.loads(copy.read_text(encoding="utf-8"))["results"]
    new = [(f, r["line_number"], r["type"]) for f, rs in results.items() for r in rs if r.get("is_secret") is not False]
    audited = sum(len(rs) for rs in results.values()) - len(new)
    for f, line, kind in new:
        print(f"{f}:{line}: {kind} — not in .secrets.baseline as an audited false positive", file=sys.stderr)
    if new:
        print(f"detect-secrets: {len(new)} new or unaudited secret(s); remove them, or if they are fake: "
              "make secrets-baseline, then detect-secrets audit .secrets.baseline", file=sys.stderr)
        return 1
    print(f"detect-secrets: 0 secrets ({audited} audited false positives in the baseline)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
