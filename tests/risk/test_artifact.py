"""The committed artifact: loads safely, refuses tampering and untrusted types, explains its signal."""

import json
import shutil

import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from mh_platform.risk import artifact as art
from mh_platform.risk.artifact import ArtifactRefused, load_active, load_artifact, save_artifact, sha256_file
from mh_platform.risk.features import FEATURE_NAMES, feature_vector
from mh_platform.risk.predict import WatchModel, get_model, reset_cache, watch_signal

MODELS = art.MODELS_DIR
V1 = MODELS / "risk-v1"


@pytest.fixture(scope="module")
def model():
    return WatchModel(load_artifact(V1))


def test_committed_artifact_loads_and_matches_its_manifest():
    loaded = load_artifact(V1)
    m = loaded.manifest
    assert m["sha256"] == sha256_file(V1 / "model.skops")
    assert m["features"] == list(FEATURE_NAMES)
    for key in ("sklearn_version", "skops_version", "seed", "metrics", "threshold", "trusted_types", "policy"):
        assert key in m
    assert m["all_bars_passed"] is True
    assert 0 < loaded.threshold < 1


def test_active_pointer_names_the_committed_artifact_with_its_hash():
    active = json.loads((MODELS / "ACTIVE").read_text())
    assert active["artifact"] == "risk-v1"
    assert active["sha256"] == sha256_file(V1 / "model.skops")
    assert active["approved_by"]
    assert load_active().manifest["sha256"] == active["sha256"]


def test_one_changed_byte_is_refused(tmp_path):
    bad = tmp_path / "risk-v1"
    shutil.copytree(V1, bad)
    data = bytearray((bad / "model.skops").read_bytes())
    data[len(data) // 2] ^= 0x01
    (bad / "model.skops").write_bytes(bytes(data))
    with pytest.raises(ArtifactRefused, match="sha256"):
        load_artifact(bad)


def test_a_model_not_matching_the_approved_hash_is_refused(tmp_path):
    shutil.copytree(V1, tmp_path / "risk-v1")
    (tmp_path / "ACTIVE").write_text(json.dumps({"artifact": "risk-v1", "sha256": "0" * 64}))
    with pytest.raises(ArtifactRefused, match="approved"):
        load_active(tmp_path)


def test_untrusted_types_are_refused_before_loading(tmp_path):
    d = tmp_path / "evil"
    d.mkdir()
    sio.dump(DecisionTreeClassifier().fit(np.eye(3), [0, 1, 1]), d / "model.skops")
    manifest = {"sha256": sha256_file(d / "model.skops"), "sklearn_version": load_artifact(V1).manifest["sklearn_version"],
                "features": list(FEATURE_NAMES), "threshold": 0.5}
    (d / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactRefused, match="trusted"):
        load_artifact(d)


def test_save_refuses_untrusted_types_and_overwrites(tmp_path):
    with pytest.raises(ArtifactRefused, match="trusted"):
        save_artifact({"x": LogisticRegression().fit(np.eye(2), [0, 1]), "f": DecisionTreeClassifier()},
                      tmp_path / "a", {})
    assert not (tmp_path / "a" / "model.skops").exists()
    m = load_artifact(V1).model
    save_artifact(m, tmp_path / "b", {"threshold": 0.2, "features": list(FEATURE_NAMES)})
    with pytest.raises(ArtifactRefused, match="never overwritten"):
        save_artifact(m, tmp_path / "b", {})


def test_another_sklearn_minor_version_is_refused(tmp_path):
    d = tmp_path / "old"
    shutil.copytree(V1, d)
    m = json.loads((d / "manifest.json").read_text())
    m["sklearn_version"] = "0.24.2"
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactRefused, match="scikit-learn"):
        load_artifact(d)


def test_no_pickle_or_joblib_loading_anywhere_in_risk():
    import pathlib

    root = pathlib.Path(art.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "pickle" not in text.replace("never pickle", "").replace("not pickle", ""), path
        assert "joblib.load" not in text, path


def test_watch_signal_explains_with_items(model):
    cur = {"phq9": [2, 2, 1, 2, 1, 2, 2, 1, 0], "gad7": [2, 2, 2, 1, 1, 1, 1],
           "k10": [3, 3, 2, 3, 2, 1, 3, 3, 2, 3], "who5": [1, 1, 2, 1, 1]}
    prev = {"phq9": [1] * 9, "gad7": [1] * 7, "k10": [2] * 10, "who5": [3] * 5}
    sig = watch_signal(feature_vector(cur, prev, girl=1, senior=1), model=model)
    assert 0 < sig.probability < 1
    assert sig.eligible and sig.over_threshold == (sig.probability >= model.threshold)
    assert 1 <= len(sig.top_items) <= 3
    assert all(t.contribution > 0 for t in sig.top_items)
    assert sig.top_items[0].label.split(" item ")[0] in {"PHQ-9", "GAD-7", "K10", "WHO-5"}
    core = sig.to_flag_signal()
    assert core.watch == sig.over_threshold and core.probability == sig.probability


def test_students_already_in_the_high_band_get_no_watch_signal(model):
    cur = {"phq9": [0, 0, 0, 0, 0, 0, 0, 0, 1], "gad7": [3] * 7, "k10": [5] * 10, "who5": [0] * 5}
    sig = model.signal(feature_vector(cur, None, girl=0, senior=0))
    assert not sig.eligible and not sig.over_threshold  # item 9 >= 1: the rules raise red themselves


def test_get_model_loads_once():
    reset_cache()
    a = get_model()
    assert get_model() is a
    reset_cache()


def test_probability_rises_with_symptoms(model):
    low = {"phq9": [0] * 9, "gad7": [0] * 7, "k10": [1] * 10, "who5": [5] * 5}
    high = {"phq9": [2] * 8 + [0], "gad7": [2] * 7, "k10": [4] * 10, "who5": [1] * 5}
    assert model.signal(feature_vector(high, None, girl=0, senior=0)).probability > \
        model.signal(feature_vector(low, None, girl=0, senior=0)).probability


REQUIRED_CARD_SECTIONS = (
    "Intended use", "Out-of-scope use", "Outcome and horizon", "Predictors", "Missing data", "Training data",
    "Evaluation", "Calibration", "Subgroup results", "Threshold", "Fairness", "Limitations",
    "Retraining", "Impact assessment (PIPL Art. 55)", "TRIPOD+AI",
)


def test_model_card_has_the_required_sections():
    text = (V1 / "MODEL_CARD.md").read_text(encoding="utf-8")
    headings = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]
    for section in REQUIRED_CARD_SECTIONS:
        assert any(h.startswith(section) for h in headings), section
    # the card quotes the artifact it describes
    assert load_artifact(V1).manifest["sha256"][:16] in text
    assert "PIPL" in text and "Art. 55" in text and "yellow" in text.lower()


def test_models_readme_exists():
    text = (MODELS / "README.md").read_text(encoding="utf-8")
    assert "ACTIVE" in text and "skops" in text
