"""T23: the release manifest (scripts/release_manifest.py) finds every changed, missing or added file
of a deployed tree, and passes an untouched one. The script runs as its own process, never importing
mh_platform, against a copy of the package."""

import pathlib
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
