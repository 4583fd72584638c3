"""The release manifest: sha256 of every file of the ``mh_platform`` package, and its check on a
deployed host. Standard library only, and it never imports mh_platform: it must be able to judge a
tree that may have been tampered with (T23; the REDCap lesson of security.md §3, item 15).

    python3 scripts/release_manifest.py write MANIFEST [SOURCE_ROOT]
    python3 scripts/release_manifest.py verify MANIFEST DEPLOYED_ROOT

``SOURCE_ROOT`` / ``DEPLOYED_ROOT`` is the directory that holds ``mh_platform/`` (the checkout, or the
environment's ``site-packages``). The manifest is ``sha256sum`` format (``<hex>  mh_platform/…``), so
``cd ROOT && sha256sum --check --strict MANIFEST`` checks the listed files too; ``verify`` also reports
files that are **not** listed (an added module is how a backdoor survives an upgrade), ignoring only
``__pycache__`` directories, the translators' ``.pot`` template (not shipped) and ``.mo`` catalogs that
were not compiled when the manifest was written (listed and checked when present at ``write``). The
manifest lists what ``pip install`` ships: ``.py`` files and the ``[tool.setuptools.package-data]``
patterns of pyproject.toml, so one manifest checks a checkout and a ``site-packages`` alike. Exit
status 0 only when every listed file is present and equal and nothing else is there.
"""

from __future__ import annotations

import fnmatch
import hashlib
import pathlib
import sys
import tomllib

PACKAGE = "mh_platform"
NOT_SHIPPED = {".pyc", ".pyo", ".pot"}


def _files(root: pathlib.Path) -> list[str]:
    """Every file under ROOT/mh_platform/ but caches and the .pot template."""
    out = []
    for p in (root / PACKAGE).rglob("*"):
        rel = p.relative_to(root)
        if "__pycache__" in rel.parts or p.suffix in NOT_SHIPPED or not p.is_file():
            continue
        out.append(rel.as_posix())
    return sorted(out)


def _shipped(source_root: pathlib.Path) -> list[str]:
    """The files ``pip install`` puts in site-packages: .py and pyproject's package-data patterns."""
    pyproject = tomllib.loads((source_root / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = ["*.py", *pyproject["tool"]["setuptools"]["package-data"]["*"]]
    return [f for f in _files(source_root) if any(fnmatch.fnmatch(f.rsplit("/", 1)[-1], pat) for pat in patterns)]


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 16), b""):
            h.update(block)
    return h.hexdigest()


def write(manifest: pathlib.Path, root: pathlib.Path) -> int:
    files = _shipped(root)
    if not any(f.endswith(".py") for f in files):
        print(f"no {PACKAGE}/ under {root}", file=sys.stderr)
        return 2
    manifest.write_text("".join(f"{_sha256(root / f)}  {f}\n" for f in files), encoding="utf-8")
    print(f"{manifest}: {len(files)} files ({sum(f.endswith('.py') for f in files)} .py)")
    return 0


def read(manifest: pathlib.Path) -> dict[str, str]:
    listed: dict[str, str] = {}
    for n, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64 or name in listed or ".." in name.split("/") or name.startswith("/"):
            raise ValueError(f"{manifest}:{n}: not a manifest line")
        listed[name] = digest
    return listed


def verify(manifest: pathlib.Path, root: pathlib.Path) -> int:
    listed = read(manifest)
    present = set(_files(root))
    missing = sorted(set(listed) - present)
    changed = sorted(f for f in set(listed) & present if _sha256(root / f) != listed[f])
    unexpected = sorted(f for f in present - set(listed) if not f.endswith(".mo"))  # .mo: compiled after write
    for kind, names in (("missing", missing), ("changed", changed), ("unexpected", unexpected)):
        for f in names:
            print(f"{kind}: {f}")
    bad = len(missing) + len(changed) + len(unexpected)
    print(f"release manifest: {len(listed)} listed, {len(missing)} missing, {len(changed)} changed, "
          f"{len(unexpected)} unexpected", file=sys.stderr)
    return 1 if bad else 0


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in {"write", "verify"} or (argv[0] == "verify" and len(argv) != 3):
        print(__doc__, file=sys.stderr)
        return 2
    manifest = pathlib.Path(argv[1])
    root = pathlib.Path(argv[2]) if len(argv) > 2 else pathlib.Path(__file__).resolve().parents[1]
    return write(manifest, root) if argv[0] == "write" else verify(manifest, root)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
