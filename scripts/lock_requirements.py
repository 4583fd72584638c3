"""Write a hash-pinned requirements file (pip ``--require-hashes``) for one distribution's (or a few
distributions') run-time closure, as installed in the environment that runs this script.

    .venv/bin/python scripts/lock_requirements.py mh-platform requirements/app.txt
    .venv-tools/bin/python scripts/lock_requirements.py semgrep requirements/semgrep.txt --include-root
    .venv-dast/bin/python scripts/lock_requirements.py wapiti3,sqlmap requirements/dast.txt --include-root

It walks the distribution's requirements (extras not followed, environment markers evaluated here;
several roots, comma-separated, have their closures merged),
pins each to the installed version, downloads exactly that version's files for this platform
(``pip download --no-deps``) and records their sha256. The hashes are those of the files pip chooses
for this interpreter and platform (CPython 3.11, Linux x86_64: the CI machine); another platform needs
its own lock. Needs the package index (run it when upgrading, not in CI).
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import pathlib
import subprocess
import sys
import tempfile

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def closure(root: str, *, include_root: bool = False) -> dict[str, str]:
    """canonical name → installed version, for ``root``'s run-time requirements (and the extras they
    ask of each other, e.g. ``pyjwt[crypto]``); ``root`` itself only with ``include_root``."""
    seen: dict[str, str] = {}
    done: set[tuple[str, str]] = set()
    todo: list[tuple[str, str]] = [(root, "")]  # (distribution, extra asked of it; "" = its base requirements)
    while todo:
        dist_name, extra = todo.pop()
        key = (canonicalize_name(dist_name), extra)
        if key in done:
            continue
        done.add(key)
        dist = md.distribution(dist_name)
        seen[key[0]] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": extra}):
                continue
            if req.marker is None and extra:
                continue  # a base requirement, already followed with extra ""
            todo += [(req.name, "")] + [(req.name, e) for e in sorted(req.extras)]
    if not include_root:
        seen.pop(canonicalize_name(root), None)
    return seen


def main(root: str, out: str, *flags: str) -> int:
    pins: dict[str, str] = {}
    for name in root.split(","):
        pins |= closure(name, include_root="--include-root" in flags)
    lines = [f"# {root}: its run-time dependencies pinned with hashes (scripts/lock_requirements.py; do not edit).",
             f"# Python {sys.version_info.major}.{sys.version_info.minor}, {sys.platform}; install with",
             "#   pip install --require-hashes --no-deps -r THIS_FILE", ""]
    with tempfile.TemporaryDirectory() as tmp:
        for name, version in sorted(pins.items()):
            d = pathlib.Path(tmp) / name
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(d),  # noqa: S603
                            f"{name}=={version}"], check=True)
            hashes = sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in d.iterdir())
            lines.append(f"{name}=={version} \\")
            lines += [f"    --hash=sha256:{h}" + (" \\" if i < len(hashes) - 1 else "") for i, h in enumerate(hashes)]
    pathlib.Path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{out}: {len(pins)} packages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(*sys.argv[1:]))
