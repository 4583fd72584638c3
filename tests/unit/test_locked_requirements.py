"""T23: the run-time dependencies are pinned with hashes (requirements/app.txt), and so are the
semgrep tool venv (requirements/semgrep.txt, installed by make lint with --require-hashes) and the
T14 DAST tool venv (requirements/dast.txt, installed by make dast-deps the same way).

The lock must name every distribution in the installed project's run-time closure (a new transitive
dependency fails here until ``scripts/lock_requirements.py`` is run again), pin each with ``==`` and
at least one sha256, and stay inside pyproject's own ranges."""

import importlib.metadata as md
import pathlib
import re
import sys

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "scripts"))
from lock_requirements import closure  # noqa: E402

ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)(?P<hashes>(?:\s+--hash=sha256:[0-9a-f]{64})+)\s*$")


def parse(path: pathlib.Path) -> dict[str, str]:
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pins: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = ENTRY.match(line)
        assert m, f"{path.name}: not '==' with sha256 hashes: {line[:80]}"
        pins[canonicalize_name(m["name"])] = m["version"]
    return pins


@pytest.mark.parametrize("name", ["app.txt", "semgrep.txt", "dast.txt"])
def test_every_entry_is_pinned_with_a_hash(name):
    assert len(parse(REPO / "requirements" / name)) > 20


def test_the_app_lock_covers_the_runtime_closure():
    locked = parse(REPO / "requirements" / "app.txt")
    needed = closure("mh-platform")
    assert set(needed) - set(locked) == set(), "unpinned run-time dependencies: run scripts/lock_requirements.py"
    assert set(locked) - set(needed) == set(), "the lock names packages the project no longer needs"


def test_the_app_lock_is_inside_pyprojects_ranges():
    locked = parse(REPO / "requirements" / "app.txt")
    for line in md.requires("mh-platform") or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        assert Version(locked[canonicalize_name(req.name)]) in req.specifier, f"{req} vs the lock"


def test_semgrep_is_pinned():
    assert "semgrep" in parse(REPO / "requirements" / "semgrep.txt")


def test_the_dast_tools_are_pinned():
    """T14: sqlmap and wapiti3 (the scanner, not PyPI's unrelated ``wapiti``) at the versions the harness
    was written against; wapiti3 3.2.3 is the last release for Python 3.11 (3.0.x crashes on it)."""
    pins = parse(REPO / "requirements" / "dast.txt")
    assert pins["wapiti3"] == "3.2.3" and "sqlmap" in pins and "wapiti" not in pins
