"""T23: the release manifest (scripts/release_manifest.py) finds every changed, missing or added file
of a deployed tree, and passes an untouched one; bytecode, which no manifest can vouch for, fails
``verify`` until ``verify --recompile`` has replaced it with bytecode compiled from the verified
sources. The script runs as its own process, never importing mh_platform, against a copy of the
package."""

import importlib.util
import marshal
import os
import pathlib
import py_compile
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "release_manifest.py"


def run(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=60)


@pytest.fixture
def deployed(tmp_path):
    """A manifest written from the checkout, and a copy of the package as a host would hold it."""
    manifest = tmp_path / "release-manifest.sha256"
    assert run("write", manifest, REPO).returncode == 0
    root = tmp_path / "site-packages"
    shutil.copytree(REPO / "mh_platform", root / "mh_platform",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.pot"))
    return manifest, root


def test_manifest_lists_every_module(deployed):
    manifest, _ = deployed
    listed = {line.split("  ", 1)[1] for line in manifest.read_text().splitlines()}
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "mh_platform").rglob("*.py")}
    assert modules <= listed
    assert "mh_platform/web/templates/base.html" in listed  # package data too
    assert all(len(line.split("  ", 1)[0]) == 64 for line in manifest.read_text().splitlines())


def test_an_untouched_tree_verifies(deployed):
    manifest, root = deployed
    assert not [p for p in root.rglob("*") if p.suffix == ".pyc" or p.name == "__pycache__"]  # no bytecode
    res = run("verify", manifest, root)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout == ""


def append(path: pathlib.Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


@pytest.mark.parametrize(("tamper", "expect"), [
    (lambda r: append(r / "mh_platform/web/app.py", "\n# one more line\n"), "changed: mh_platform/web/app.py"),
    (lambda r: (r / "mh_platform/core/fhir.py").unlink(), "missing: mh_platform/core/fhir.py"),
    (lambda r: (r / "mh_platform/services/upgrade_helper.py").write_text("import os\n"),
     "unexpected: mh_platform/services/upgrade_helper.py"),
    (lambda r: (r / "mh_platform/web/templates/base.html").write_bytes(
        (r / "mh_platform/web/templates/base.html").read_bytes().replace(b"</body>", b"<script src=x></script></body>")),
     "changed: mh_platform/web/templates/base.html"),
], ids=["edited module", "deleted module", "added module", "edited template"])
def test_a_tampered_tree_fails(deployed, tamper, expect):
    manifest, root = deployed
    tamper(root)
    res = run("verify", manifest, root)
    assert res.returncode == 1
    assert expect in res.stdout.splitlines()


def test_a_malformed_manifest_is_refused(deployed, tmp_path):
    _, root = deployed
    bad = tmp_path / "bad.sha256"
    bad.write_text("0" * 64 + "  ../etc/passwd\n")
    assert run("verify", bad, root).returncode != 0


def test_usage_errors_exit_2(deployed):
    manifest, root = deployed
    assert run("verify", manifest).returncode == 2
    assert run("verify", manifest, root, "--recompile").returncode == 2
    assert run("write", "--recompile", manifest).returncode == 2


# Bytecode. The reviewer's reproduction: a __pycache__ pyc whose 16-byte header (magic, flags, source
# mtime and size) is kept and whose code is replaced. Python trusts the header and runs the code.

CLOCK = "mh_platform/core/clock.py"
CLOCK_PYC = f"mh_platform/core/__pycache__/clock.{sys.implementation.cache_tag}.pyc"


def import_clock(root: pathlib.Path) -> subprocess.CompletedProcess[str]:
    """Import mh_platform.core.clock from ROOT in a fresh interpreter (-v: where its code came from)."""
    code = (f"import mh_platform.core.clock as c; assert c.__file__.startswith({str(root)!r}), c.__file__; "
            "print('TAMPERED' if hasattr(c, 'TAMPERED') else 'verified')")
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return subprocess.run([sys.executable, "-v", "-c", code], capture_output=True, text=True, timeout=60, env=env,
                          cwd=root)


def tamper_pyc(root: pathlib.Path) -> pathlib.Path:
    src = root / CLOCK
    pyc = pathlib.Path(py_compile.compile(str(src), cfile=str(root / CLOCK_PYC), doraise=True,
                                          invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP))
    header = pyc.read_bytes()[:16]
    evil = compile(src.read_text(encoding="utf-8") + "\nTAMPERED = True\n", str(src), "exec", dont_inherit=True)
    pyc.write_bytes(header + marshal.dumps(evil))
    return pyc


def test_a_tampered_pyc_with_its_header_kept_fails(deployed):
    manifest, root = deployed
    tamper_pyc(root)
    assert import_clock(root).stdout.strip() == "TAMPERED"  # the attack is real: Python runs it
    res = run("verify", manifest, root)
    assert res.returncode == 1
    assert f"unverified bytecode: {CLOCK_PYC}" in res.stdout.splitlines()


def test_recompile_replaces_the_tampered_pyc_with_verified_bytecode(deployed):
    manifest, root = deployed
    pyc = tamper_pyc(root)
    (root / "mh_platform/web/__pycache__").mkdir()
    (root / "mh_platform/web/__pycache__/app.cpython-399.pyc").write_bytes(b"another interpreter's")
    res = run("verify", "--recompile", manifest, root)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 unverified files removed" in res.stderr
    assert not (root / "mh_platform/web/__pycache__/app.cpython-399.pyc").exists()
    imported = import_clock(root)
    assert imported.stdout.strip() == "verified", imported.stderr[-2000:]
    # and Python runs the new pyc (accepts its header) rather than compiling the source on its own
    assert f"code object from '{pyc}'" in imported.stderr
    listed = [n for n in (line.split("  ", 1)[1] for line in manifest.read_text().splitlines()) if n.endswith(".py")]
    pycs = {p.relative_to(root).as_posix() for p in root.rglob("*.pyc")}
    assert len(pycs) == len(listed)  # one per listed module, nothing else
    # the bytecode it wrote is bytecode all the same: plain verify cannot vouch for it either
    again = run("verify", manifest, root)
    assert again.returncode == 1
    assert f"unverified bytecode: {CLOCK_PYC}" in again.stdout.splitlines()
    assert run("verify", "--recompile", manifest, root).returncode == 0  # and it can be run again


def test_a_sourceless_pyc_module_fails_and_recompile_removes_it(deployed):
    manifest, root = deployed
    backdoor = root / "mh_platform/services/upgrade_helper.pyc"
    code = compile("X = 1\n", "upgrade_helper.py", "exec")
    backdoor.write_bytes(importlib.util.MAGIC_NUMBER + bytes(12) + marshal.dumps(code))  # header: flags, mtime, size
    env = {**os.environ, "PYTHONPATH": str(root)}
    probe = [sys.executable, "-c", "import mh_platform.services.upgrade_helper as m; print(m.X)"]
    assert subprocess.run(probe, capture_output=True, text=True, env=env, cwd=root, timeout=60).stdout.strip() == "1"
    res = run("verify", manifest, root)
    assert res.returncode == 1
    assert "unverified bytecode: mh_platform/services/upgrade_helper.pyc" in res.stdout.splitlines()
    assert run("verify", "--recompile", manifest, root).returncode == 0
    assert not backdoor.exists()
    assert subprocess.run(probe, capture_output=True, text=True, env=env, cwd=root, timeout=60).returncode != 0


def test_recompile_leaves_a_tree_with_a_changed_source_alone(deployed):
    """Sources first: a tree that fails keeps its bytecode (evidence) and gets none compiled."""
    manifest, root = deployed
    pyc = tamper_pyc(root)
    before = pyc.read_bytes()
    append(root / "mh_platform/web/app.py", "\n# one more line\n")
    res = run("verify", "--recompile", manifest, root)
    assert res.returncode == 1
    out = res.stdout.splitlines()
    assert "changed: mh_platform/web/app.py" in out
    assert f"unverified bytecode: {CLOCK_PYC}" in out
    assert pyc.read_bytes() == before
    assert [p.relative_to(root).as_posix() for p in root.rglob("*.pyc")] == [CLOCK_PYC]
