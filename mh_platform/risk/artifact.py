"""Saving and loading model artifacts: skops only, never pickle or joblib loading.

An artifact is a directory ``models/<name>/`` with

* ``model.skops`` -- the fitted estimator, written with ``skops.io.dump``;
* ``manifest.json`` -- sha256 of ``model.skops``, scikit-learn / skops / numpy versions, feature
  names, training seed and cohort arguments, threshold and policy, metrics;
* ``MODEL_CARD.md`` -- written by hand from the manifest's numbers.

:func:`load_artifact` refuses (raises :class:`ArtifactRefused`) when the file's sha256 does not
match the manifest (or the approved pointer), when the file names any type outside
``TRUSTED_TYPES`` + ``BASIC_TYPES`` (every type in the file's schema is checked *before* loading,
not only those skops itself distrusts), or when the
scikit-learn minor version differs from the one that trained it.

Approval: ``models/ACTIVE`` (JSON) names the artifact the platform uses and the sha256 a person
approved. Retraining writes a new directory beside the old one and never touches ``ACTIVE``;
``mhp model approve DIR`` does, after re-running the evaluation bars (see :func:`approve`).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import skops
import skops.io as sio

from mh_platform.core.errors import DomainError

MODEL_FILE = "model.skops"
MANIFEST_FILE = "manifest.json"
CARD_FILE = "MODEL_CARD.md"
ACTIVE_FILE = "ACTIVE"
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
DEFAULT_ARTIFACT = "risk-v1"
FORMAT = 1

# Every non-default type the watch model's skops file may contain. Anything else is refused.
TRUSTED_TYPES: tuple[str, ...] = (
    "mh_platform.risk.estimators.NonNegativeLogisticRegression",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.model_selection._split.StratifiedGroupKFold",
    "sklearn.pipeline.Pipeline",
    "sklearn.preprocessing._data.StandardScaler",
)


# Containers and numpy values skops writes around them; also checked explicitly (see artifact_types).
BASIC_TYPES: tuple[str, ...] = (
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int", "builtins.float",
    "builtins.bool", "builtins.NoneType", "numpy.ndarray", "numpy.float64", "numpy.int64", "numpy.int8",
    "numpy.bool_", "numpy.dtype",
)


def artifact_types(path: str | os.PathLike) -> set[str]:
    """Every ``module.class`` named anywhere in a skops file's schema (not only the ones skops
    itself considers untrusted: skops trusts many scikit-learn types by default, we do not)."""
    with zipfile.ZipFile(path) as z:
        schema = json.loads(z.read("schema.json"))
    found: set[str] = set()
    stack: list[Any] = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if isinstance(node.get("__class__"), str) and isinstance(node.get("__module__"), str):
                found.add(f"{node['__module__']}.{node['__class__']}")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def _check_types(target: Path) -> list[str]:
    """Types of ``target`` outside the explicit lists; raises ArtifactRefused if unreadable."""
    try:
        found = artifact_types(target) | set(sio.get_untrusted_types(file=target))
    except Exception as exc:  # noqa: BLE001 - a corrupt file is refused, whatever the reason
        raise ArtifactRefused(f"{target} cannot be inspected: {type(exc).__name__}") from exc
    return sorted(found - set(TRUSTED_TYPES) - set(BASIC_TYPES))


class ArtifactRefused(DomainError):
    """A model artifact that must not be loaded (hash mismatch, untrusted type, wrong version)."""

    code = "artifact_refused"


def models_dir() -> Path:
    return Path(os.environ.get("MHP_MODELS_DIR", str(MODELS_DIR)))


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def save_artifact(model: Any, out_dir: str | os.PathLike, manifest_fields: dict[str, Any]) -> dict[str, Any]:
    """Write ``model.skops`` and ``manifest.json`` into ``out_dir`` (created; must not hold a model)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / MODEL_FILE
    if target.exists():
        raise ArtifactRefused(f"{target} exists; an artifact is never overwritten -- write a new directory")
    sio.dump(model, target)
    untrusted = _check_types(target)
    if untrusted:
        target.unlink()
        raise ArtifactRefused(f"model contains types outside the trusted list: {untrusted}")
    manifest = {
        "format": FORMAT,
        "artifact": out.name,
        "file": MODEL_FILE,
        "sha256": sha256_file(target),
        "created_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "sklearn_version": sklearn.__version__,
        "skops_version": skops.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "trusted_types": list(TRUSTED_TYPES),
        **manifest_fields,
    }
    (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


@dataclass(frozen=True)
class LoadedArtifact:
    model: Any
    manifest: dict[str, Any]
    path: Path

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"])

    @property
    def version(self) -> str:
        return f"{self.manifest.get('artifact', self.path.name)}@{self.manifest['sha256'][:12]}"


def read_manifest(artifact_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(artifact_dir) / MANIFEST_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactRefused(f"{path} is missing") from exc
    except json.JSONDecodeError as exc:
        raise ArtifactRefused(f"{path} is not valid JSON: {exc}") from exc


def load_artifact(artifact_dir: str | os.PathLike, *, expected_sha256: str | None = None,
                  check_version: bool = True) -> LoadedArtifact:
    """Load an artifact after checking its hash, its types and its scikit-learn version."""
    d = Path(artifact_dir)
    manifest = read_manifest(d)
    target = d / manifest.get("file", MODEL_FILE)
    if not target.is_file():
        raise ArtifactRefused(f"{target} is missing")
    actual = sha256_file(target)
    if actual != manifest.get("sha256"):
        raise ArtifactRefused(f"{target}: sha256 {actual[:16]}... does not match the manifest "
                              f"({str(manifest.get('sha256'))[:16]}...); refusing to load")
    if expected_sha256 is not None and actual != expected_sha256:
        raise ArtifactRefused(f"{target}: sha256 does not match the approved hash in {ACTIVE_FILE}; refusing to load")
    if check_version and _minor(str(manifest.get("sklearn_version", ""))) != _minor(sklearn.__version__):
        raise ArtifactRefused(f"{target} was trained with scikit-learn {manifest.get('sklearn_version')}, "
                              f"this is {sklearn.__version__}; retrain or pin the version")
    untrusted = _check_types(target)
    if untrusted:
        raise ArtifactRefused(f"{target} contains types outside the trusted list: {untrusted}")
    model = sio.load(target, trusted=[t for t in sio.get_untrusted_types(file=target) if t in TRUSTED_TYPES])
    return LoadedArtifact(model=model, manifest=manifest, path=d)


# ----------------------------------------------------------------------------- approval pointer
def read_active(base: str | os.PathLike | None = None) -> dict[str, Any] | None:
    path = Path(base or models_dir()) / ACTIVE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactRefused(f"{path} is not valid JSON: {exc}") from exc


def load_active(base: str | os.PathLike | None = None) -> LoadedArtifact:
    """The approved artifact named by ``models/ACTIVE``, checked against the approved hash."""
    root = Path(base or models_dir())
    active = read_active(root)
    if active is None:
        raise ArtifactRefused(f"no approved model: {root / ACTIVE_FILE} is missing")
    return load_artifact(root / active["artifact"], expected_sha256=active["sha256"])


def write_active(artifact_dir: str | os.PathLike, approved_by: str, evaluation: dict[str, Any],
                 base: str | os.PathLike | None = None) -> dict[str, Any]:
    """Point ``models/ACTIVE`` at ``artifact_dir`` (which must sit in ``base``). Atomic replace."""
    root = Path(base or models_dir()).resolve()
    d = Path(artifact_dir).resolve()
    if d.parent != root:
        raise ArtifactRefused(f"{d} is not a directory of {root}")
    manifest = read_manifest(d)
    previous = read_active(root)
    record = {
        "artifact": d.name,
        "sha256": manifest["sha256"],
        "approved_by": approved_by,
        "approved_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "evaluation": evaluation,
        "previous": None if previous is None else {"artifact": previous.get("artifact"), "sha256": previous.get("sha256")},
    }
    tmp = root / (ACTIVE_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, root / ACTIVE_FILE)
    return record
