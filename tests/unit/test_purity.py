"""The pure core (core/, crypto/) imports no framework and no other layer of the project."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2] / "mh_platform"
FORBIDDEN = ("flask", "sqlalchemy", "sklearn", "alembic", "apscheduler", "werkzeug", "requests")
FORBIDDEN_PROJECT = ("db", "services", "web", "jobs", "risk", "cli")
PURE_FILES = sorted([*ROOT.joinpath("core").rglob("*.py"), *ROOT.joinpath("crypto").rglob("*.py")])


def _imports(path: pathlib.Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the package
                pkg = path.relative_to(ROOT.parent).with_suffix("").parts[: -node.level]
                names.append(".".join([*pkg, node.module or ""]).rstrip("."))
            else:
                names.append(node.module or "")
    return names


@pytest.mark.parametrize("path", PURE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_no_framework(path):
    for name in _imports(path):
        top = name.split(".")[0]
        assert top not in FORBIDDEN, f"{path.name} imports {name}"
        if top == "mh_platform":
            layer = name.split(".")[1] if "." in name else ""
            assert layer not in FORBIDDEN_PROJECT, f"{path.name} imports {name}"


def test_purity_check_sees_files():
    assert len(PURE_FILES) >= 3
