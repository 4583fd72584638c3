"""The release manifest: sha256 of every file of the ``mh_platform`` package, and its check on a
deployed host. Standard library only, and it never imports mh_platform: it must be able to judge a
tree that may have been tampered with (T23; the REDCap lesson of security.md §3, item 15).

    python3 scripts/release_manifest.py write MANIFEST [SOURCE_ROOT]
    python3 scripts/release_manifest.py verify [--recompile] MANIFEST DEPLOYED_ROOT

``SOURCE_ROOT`` / ``DEPLOYED_ROOT`` is the directory that holds ``mh_platform/`` (the checkout, or the
environment's ``site-packages``). The manifest is ``sha256sum`` format (``<hex>  mh_platform/…``), so
``cd ROOT && sha256sum --check --strict MANIFEST`` checks the listed files too; ``verify`` also reports
files that are **not** listed (an added module is how a backdoor survives an upgrade), ignoring only
the translators' ``.pot`` template (not shipped) and ``.mo`` catalogs that were not compiled when the
manifest was written (listed and checked when present at ``write``). The manifest lists what
``pip install`` ships: ``.py`` files and the ``[tool.setuptools.package-data]`` patterns of
pyproject.toml, so one manifest checks a checkout and a ``site-packages`` alike.

Bytecode cannot be checked against a manifest (a ``.pyc`` is not reproducible byte for byte, and its
header binds only the source's mtime and size, or its hash, never the code that follows), yet Python
runs a ``__pycache__/*.pyc`` whose header matches the source without reading the source again, and a
sourceless ``.pyc`` as a module of its own. So ``verify`` reports every ``.pyc`` / ``.pyo`` and every
file under a ``__pycache__`` directory as ``unverified bytecode`` and fails. ``verify --recompile``
first verifies everything else, and only if that passes deletes all of the tree's bytecode and
compiles each listed ``.py`` from the very bytes whose sha256 it has just checked (checked-hash pycs,
PEP 552, for the interpreter running this script: run it with the deployment's Python). Deployments
run ``verify --recompile`` after every install, or install with ``pip install --no-compile``, run the
app with ``PYTHONDONTWRITEBYTECODE=1`` and check with plain ``verify``. ``PYTHONPYCACHEPREFIX`` must
not be set for the app: bytecode outside the tree is invisible here.

Exit status 0 only when every listed file is present and equal and nothing else is there (after
``--recompile``: nothing but the bytecode it has just written).
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import marshal
import pathlib
import re
import shutil
import sys
import tomllib

PACKAGE = "mh_platform"
BYTECODE = {".pyc", ".pyo"}
NOT_SHIPPED = {".pot"}


def _is_bytecode(rel: pathlib.PurePath) -> bool:
    return "__pycache__" in rel.parts or rel.suffix in BYTECODE


def _files(root: pathlib.Path) -> list[str]:
    """Every file under ROOT/mh_platform/ but bytecode and the .pot template."""
    out = []
    for p in (root / PACKAGE).rglob("*"):
        rel = p.relative_to(root)
        if _is_bytecode(rel) or p.suffix in NOT_SHIPPED or not p.is_file():
            continue
        out.append(rel.as_posix())
    return sorted(out)


def _bytecode(root: pathlib.Path) -> list[str]:
    """Every .pyc / .pyo and every entry of a __pycache__ directory (a symlinked one included), but
    the __pycache__ directories themselves."""
    return sorted(p.relative_to(root).as_posix() for p in (root / PACKAGE).rglob("*")
                  if _is_bytecode(p.relative_to(root)) and not (p.is_dir() and not p.is_symlink()))


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


def _remove_bytecode(root: pathlib.Path) -> int:
    """Delete every __pycache__ directory and stray .pyc/.pyo under ROOT/mh_platform/; how many files."""
    removed = 0
    for cache in sorted({p for p in (root / PACKAGE).rglob("__pycache__")}, key=lambda p: -len(p.parts)):
        if cache.is_symlink() or not cache.is_dir():
            cache.unlink()
            removed += 1
        elif cache.exists():
            removed += sum(1 for p in cache.rglob("*") if not p.is_dir() or p.is_symlink())
            shutil.rmtree(cache)
    for p in (root / PACKAGE).rglob("*"):
        if p.suffix in BYTECODE and (p.is_symlink() or not p.is_dir()):
            p.unlink()
            removed += 1
    return removed


def _compile_verified(root: pathlib.Path, listed: dict[str, str]) -> int:
    """Write ``__pycache__/<name>.<tag>.pyc`` for each listed .py from the bytes whose sha256 matches
    the manifest (read once: no window between the check and the compile). Checked-hash pycs (PEP 552):
    Python compares the source's hash with the header and recompiles from the source if it changes."""
    tag = sys.implementation.cache_tag
    if tag is None:
        raise RuntimeError("this interpreter has no bytecode cache")
    n = 0
    for name, digest in sorted(listed.items()):
        if not name.endswith(".py"):
            continue
        path = root / name
        source = path.read_bytes()
        if hashlib.sha256(source).hexdigest() != digest:
            raise RuntimeError(f"{name} changed while recompiling")
        code = compile(source, str(path), "exec", dont_inherit=True, optimize=0)
        data = importlib.util.MAGIC_NUMBER + (0b11).to_bytes(4, "little") + importlib.util.source_hash(source) \
            + marshal.dumps(code)
        cache = path.parent / "__pycache__"
        cache.mkdir(exist_ok=True)
        target = cache / f"{path.stem}.{tag}.pyc"
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)
        n += 1
    return n


def _warn_interpreter(root: pathlib.Path) -> None:
    """The pycs are for this interpreter; say so when the tree evidently belongs to another one."""
    mine = f"python{sys.version_info.major}.{sys.version_info.minor}"
    theirs = {part for part in root.resolve().parts if re.fullmatch(r"python\d+\.\d+", part)}
    if theirs and mine not in theirs:
        print(f"warning: compiling with {mine} ({sys.executable}) a tree under {', '.join(sorted(theirs))}: "
              "its interpreter will not use these pycs (run this script with the deployment's Python)",
              file=sys.stderr)
    if sys.pycache_prefix:
        print(f"warning: PYTHONPYCACHEPREFIX / -X pycache_prefix is set here ({sys.pycache_prefix}); the pycs "
              "are written into the tree all the same, and an app run with a prefix reads bytecode this "
              "check never sees", file=sys.stderr)


def verify(manifest: pathlib.Path, root: pathlib.Path, *, recompile: bool = False) -> int:
    listed = read(manifest)
    present = set(_files(root))
    missing = sorted(set(listed) - present)
    changed = sorted(f for f in set(listed) & present if _sha256(root / f) != listed[f])
    unexpected = sorted(f for f in present - set(listed) if not f.endswith(".mo"))  # .mo: compiled after write
    bytecode = _bytecode(root)
    sources_bad = len(missing) + len(changed) + len(unexpected)
    reported = [("missing", missing), ("changed", changed), ("unexpected", unexpected)]
    if not (recompile and not sources_bad):
        # Never touch the bytecode of a tree that fails: it is evidence, and compiling it would bless it.
        reported.append(("unverified bytecode", bytecode))
    for kind, names in reported:
        for f in names:
            print(f"{kind}: {f}")
    summary = (f"release manifest: {len(listed)} listed, {len(missing)} missing, {len(changed)} changed, "
               f"{len(unexpected)} unexpected")
    if sources_bad or not recompile:
        print(f"{summary}, {len(bytecode)} unverified bytecode", file=sys.stderr)
        return 1 if sources_bad or bytecode else 0
    _warn_interpreter(root)
    removed = _remove_bytecode(root)
    try:
        compiled = _compile_verified(root, listed)
    except (OSError, RuntimeError, SyntaxError, ValueError) as e:
        print(f"recompile failed: {e}", file=sys.stderr)
        return 1
    print(f"{summary}; bytecode: {removed} unverified files removed, {compiled} recompiled from verified "
          f"sources ({sys.implementation.cache_tag})", file=sys.stderr)
    return 0


def main(argv: list[str]) -> int:
    recompile = argv[:2] == ["verify", "--recompile"]
    if recompile:
        argv = [argv[0], *argv[2:]]
    if len(argv) < 2 or argv[0] not in {"write", "verify"} or (argv[0] == "verify" and len(argv) != 3) \
            or (argv[0] == "write" and len(argv) > 3) or any(a.startswith("--") for a in argv[1:]):
        print(__doc__, file=sys.stderr)
        return 2
    manifest = pathlib.Path(argv[1])
    root = pathlib.Path(argv[2]) if len(argv) > 2 else pathlib.Path(__file__).resolve().parents[1]
    return write(manifest, root) if argv[0] == "write" else verify(manifest, root, recompile=recompile)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
