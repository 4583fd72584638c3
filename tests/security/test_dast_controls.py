"""T14 planted-defect controls: the DAST harness (``scripts/dast.py``) finds a SQL injection with sqlmap
and a reflected XSS with wapiti in a throwaway app (``dast_control_app.py``), through the same functions
the real scan uses (``api_targets`` from the OpenAPI document, ``run_pass``, ``run_sqlmap``,
``run_wapiti``, ``failed``).

Part of the normal suite (about 40 s): ``make test`` builds ``.venv-dast`` first (``make dast-deps``),
and ``make dast`` runs it (``pytest -m dast``) before the real scans. Without that venv the test fails
(the harness exits naming ``make dast-deps``); it never skips.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

pytestmark = pytest.mark.dast


def _harness():
    spec = importlib.util.spec_from_file_location("mhp_dast", REPO / "scripts" / "dast.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["mhp_dast"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_planted_sql_injection_and_reflected_xss_are_found(tmp_path):
    sys.path.insert(0, str(HERE))
    import dast_control_app as control

    dast = _harness()
    app = control.make_app(str(tmp_path / "control.sqlite3"))
    counter = dast.StatusCounter(app)
    with dast.serve(counter) as host:
        base = f"http://{host}"
        spec = json.loads(app.test_client().get("/api/v1/openapi.json").data)
        headers = {"Authorization": f"Bearer {control.TOKEN}"}
        targets = dast.api_targets(spec, {}, headers, public=False)
        assert [t.label for t in targets] == ["GET /api/v1/items"]
        p = dast.Pass("control", targets, [dict(label="pages", base=f"{base}/", cookie=f"{control.COOKIE}=ok",
                                                 excludes=(f"{base}/api/*",))])
        summary = dast.run_pass(p, host, tmp_path / "out", "SQLite", counter)
    report = json.dumps({k: v for k, v in summary.items() if k not in ("sqlmap", "wapiti")}, indent=1)
    assert summary["parameters_tested"] == summary["parameters"] == 1, report
    assert any("#1*" in i or "id" in i for i in summary["injectable"]), report  # sqlmap: the f-string SQL
    assert any("Cross Site Scripting" in d and "/hello" in d for d in summary["wapiti_medium_or_higher"]), report
    assert not summary["tool_errors"], report
    assert dast.failed(summary)
