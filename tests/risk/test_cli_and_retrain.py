"""`mhp model` commands and the retraining job (off by default, never swaps the active model)."""

import json
import shutil

import pytest
from click.testing import CliRunner

from mh_platform.cli.model import cli
from mh_platform.risk import artifact as art
from mh_platform.risk.artifact import ArtifactRefused, sha256_file
from mh_platform.risk.retrain import approve, retrain_candidate, retrain_enabled

V1 = art.MODELS_DIR / "risk-v1"


def test_cohort_stats_json():
    res = CliRunner().invoke(cli, ["cohort-stats", "--students", "3000", "--seed", "4", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    for key in ("phq9_ge10", "gad7_ge10", "k10_ge25", "phq9_and_gad7_ge10"):
        assert set(out["prevalence"][key]) == {"all", "girls", "boys", "junior", "senior"}
        assert 0 < out["prevalence"][key]["all"] < 1
    assert set(out["cronbach_alpha"]) == {"phq9", "gad7", "k10", "who5"}
    assert out["students"] == 3000


def test_retraining_is_off_by_default(tmp_path, monkeypatch):
    monkeypatch.delenv("MHP_RISK_RETRAIN_ENABLED", raising=False)
    assert not retrain_enabled()
    assert retrain_candidate(base=tmp_path) is None
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv("MHP_RISK_RETRAIN_ENABLED", "1")
    assert retrain_enabled()


def _copy_models(tmp_path):
    shutil.copytree(V1, tmp_path / "risk-v1")
    shutil.copy(art.MODELS_DIR / "ACTIVE", tmp_path / "ACTIVE")
    return tmp_path


def test_approve_points_active_at_a_checked_candidate(tmp_path):
    base = _copy_models(tmp_path)
    cand = base / "risk-candidate"
    shutil.copytree(V1, cand)
    before = json.loads((base / "ACTIVE").read_text())
    rec = approve(cand, "Ms Wang (city counselling centre)", base=base)
    after = json.loads((base / "ACTIVE").read_text())
    assert after["artifact"] == "risk-candidate" and after["sha256"] == sha256_file(cand / "model.skops")
    assert after["approved_by"] == "Ms Wang (city counselling centre)"
    assert after["previous"]["artifact"] == before["artifact"]
    assert rec == after


def test_approve_refuses_failed_bars_tampering_and_anonymous(tmp_path):
    base = _copy_models(tmp_path)
    failing = base / "risk-failing"
    shutil.copytree(V1, failing)
    m = json.loads((failing / "manifest.json").read_text())
    m["metrics"]["bars"]["B5"]["passed"] = False
    m["metrics"]["all_bars_passed"] = False
    (failing / "manifest.json").write_text(json.dumps(m))
    active = (base / "ACTIVE").read_text()
    with pytest.raises(ArtifactRefused, match="B5"):
        approve(failing, "someone", base=base)
    with pytest.raises(ArtifactRefused, match="name"):
        approve(base / "risk-v1", "  ", base=base)
    tampered = base / "risk-tampered"
    shutil.copytree(V1, tampered)
    data = bytearray((tampered / "model.skops").read_bytes())
    data[100] ^= 0xFF
    (tampered / "model.skops").write_bytes(bytes(data))
    with pytest.raises(ArtifactRefused, match="sha256"):
        approve(tampered, "someone", base=base)
    assert (base / "ACTIVE").read_text() == active  # nothing swapped in


def test_approve_command_needs_a_name():
    res = CliRunner().invoke(cli, ["approve", str(V1), "--yes"])
    assert res.exit_code != 0 and "--by" in res.output


def test_retraining_job_is_registered_and_off_by_default(monkeypatch):
    from mh_platform.jobs.registry import JOBS
    from mh_platform.jobs.tasks import model_retrain
    from mh_platform.risk.retrain import ENABLE_ENV

    spec = next(j for j in JOBS if j.id == "model_retrain")
    assert spec.func == "mh_platform.jobs.tasks:model_retrain"
    monkeypatch.delenv(ENABLE_ENV, raising=False)
    assert model_retrain(None) == {"candidate": None}
