"""A worker reads its champion in place: read-only registry, SHA-256 checked, no MLflow,
skops or scikit-learn for a compiled model, and the pipeline still guarded when it is loaded."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.ml.features import compute_features
from lifecycle_assets.ml.training import model_input
from lifecycle_assets.registry.artifacts import IntegrityError
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.serving.in_place import VerifiedModel
from lifecycle_assets.serving.model_source import served_from_registry
from lifecycle_assets.serving.requests import RequestValidator
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.test_compiled import generated_records

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("mlflow", "sklearn", "skops", "scipy", "sqlalchemy")

WORKER = """
import json, sys
from lifecycle_assets.serving.model_source import load_served_models
from lifecycle_assets.serving import predictor, service, watcher  # what a worker imports
from lifecycle_assets.serving.requests import RequestValidator
(served,) = load_served_models()
records = json.loads(sys.stdin.read())
batch = RequestValidator(served.loaded.spec, 1000, on_out_of_range="flag").validate(records)
scores = served.compiled.score(*served.row_encoder.encode(batch.records))
print("RESULT=" + json.dumps({
    "scorer": served.describe_scorer()["scorer"],
    "version": served.ref.version,
    "scores": scores.tolist(),
    "modules": sorted({m.split(".")[0] for m in sys.modules}),
}))
"""


def test_a_worker_serves_a_compiled_champion_without_mlflow_or_scikit_learn(
    registered_champion: ModelRef, lifecycle_env: Settings, spec: ModelSpec
) -> None:
    records = generated_records(spec, 40, seed=12)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LIFECYCLE_MODEL_NAMES": spec.name}
    result = subprocess.run(
        [sys.executable, "-c", WORKER],
        input=json.dumps(records),
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    line = next((x for x in result.stdout.splitlines() if x.startswith("RESULT=")), None)
    assert line is not None, result.stderr[-3000:]
    answer = json.loads(line.removeprefix("RESULT="))
    assert answer["scorer"] == "compiled"
    assert answer["version"] == registered_champion.version
    assert not set(HEAVY) & set(answer["modules"]), answer["modules"]
    # The same scores as the registered pipeline, loaded here the ordinary way.
    served = served_from_registry(registered_champion)
    batch = RequestValidator(spec, 1000, on_out_of_range="flag").validate(records)
    features = model_input(compute_features(batch.frame, spec), spec)
    expected = served.loaded.pipeline.predict_proba(features)[:, 1]
    np.testing.assert_allclose(answer["scores"], expected, rtol=0, atol=1e-9)


def test_a_proven_compiled_version_loads_its_pipeline_only_when_asked_and_checks_it_again(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    served = served_from_registry(registered_champion)
    loaded = served.loaded
    assert isinstance(loaded, VerifiedModel) and served.compiled is not None
    assert loaded.preloaded is None and "pipeline" not in vars(loaded)
    # The stored model file changes after start-up: loading it now is refused.
    data = bytearray(loaded.skops_path.read_bytes())
    data[-10] ^= 0xFF
    loaded.skops_path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError):
        _ = loaded.pipeline
    # And a fresh load of the version refuses it before serving anything.
    with pytest.raises(IntegrityError):
        served_from_registry(registered_champion)


def test_without_a_load_proof_the_pipeline_is_loaded_at_once(
    registered_champion: ModelRef, lifecycle_env: Settings
) -> None:
    tags = {
        k: v for k, v in registered_champion.tags.items() if k != config.TAG_ARTIFACT_LOAD_PROOF
    }
    served = served_from_registry(dataclasses.replace(registered_champion, tags=tags))
    assert served.compiled is not None
    assert served.loaded.preloaded is not None  # loaded on the allow-list, not deferred
    # Kept through a copy, as the watcher makes when the version gains its Bento tag.
    tagged = dataclasses.replace(served.loaded, ref=registered_champion)
    assert tagged.preloaded is served.loaded.preloaded
