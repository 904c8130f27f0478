"""Register trained pipelines in the MLflow Model Registry and load them back safely.

A registered version carries, as tags, everything needed to trust and trace it: the SHA-256 of
its skops file, the training and test set digests, the Dagster run id and the git commit. Loading
resolves an alias or version, downloads the artifact, checks the SHA-256, then loads with skops.
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import Model, infer_signature
from sklearn.pipeline import Pipeline

from lifecycle_assets import config
from lifecycle_assets.compiled.artifact import COMPILED_DIR, compile_for_registration
from lifecycle_assets.compiled.tags import TAG_COMPILED_PATH
from lifecycle_assets.crash import crash_point
from lifecycle_assets.registry.artifacts import (
    load_pipeline,
    prove_load,
    sha256_file,
    trusted_types_of,
)
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.owner import TAG_HOST, TAG_PID
from lifecycle_assets.registry.refs import ModelRef, get_version
from lifecycle_assets.registry.same_training import TAG_TRAINING_KEY, registering_once
from lifecycle_assets.spec import ModelSpec

# Explicit requirements: inferring them costs about 5 s per call and would pin whatever
# happens to be installed in the training environment.
MODEL_PIP_REQUIREMENTS = ["scikit-learn==1.9.1", "skops==0.16.0", "numpy==2.4.6", "pandas==2.3.3"]


def log_and_register(
    pipeline: Pipeline,
    spec: ModelSpec,
    *,
    input_example: pd.DataFrame,
    version_tags: dict[str, str],
    evaluation: pd.DataFrame | None = None,
    once: tuple[Ledger, str] | None = None,
) -> ModelRef:
    """Log the pipeline (skops) to the active MLflow run and register a new version.

    The SHA-256 is computed from the file as stored in the artifact store, not from a local
    copy, so that what is verified at load time is exactly what was registered. The version is
    created with all its tags in one registry call (one transaction): a process killed at any
    point leaves either no version or a complete one, never one without `artifact_sha256`.
    The compiled form (`lifecycle_assets.compiled`) is proven against `evaluation` (default:
    the input example) and logged beside it, or the tags say why scikit-learn serves instead.
    The stored skops file is loaded back with the allow-list and must score the example as the
    fitted pipeline does; `artifact_load_proof` then lets an alias move trust the SHA-256 alone.
    With `once` (the model's ledger and this training's key), a version that already holds the
    same training is found under the model's lock instead, and `SameTrainingRegistered` raised
    (`registry.same_training`).
    """
    active = mlflow.active_run()
    if active is None:
        raise RuntimeError("log_and_register needs an active MLflow run")
    # Who owns the run, so reconcile can end it FAILED if this process dies before it does.
    mlflow.set_tags({TAG_HOST: socket.gethostname(), TAG_PID: str(os.getpid())})
    example = input_example.head(5)
    scores = (
        pipeline.predict_proba(example)[:, 1] if spec.is_classifier else pipeline.predict(example)
    )
    signature = infer_signature(example, scores)
    info = mlflow.sklearn.log_model(
        pipeline,
        name=config.MODEL_ARTIFACT_NAME,
        serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
        pip_requirements=MODEL_PIP_REQUIREMENTS,
        signature=signature,
        input_example=example,
        metadata={"spec": spec.model_dump(mode="json")},
        skops_trusted_types=trusted_types_of(pipeline),
    )
    crash_point("after-log-model")
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=tmp))
        sha = sha256_file(local / config.SKOPS_FILE)
        proof = prove_load(local / config.SKOPS_FILE, sha, pipeline, example)
        parity = input_example if evaluation is None else evaluation
        compiled = compile_for_registration(pipeline, spec, parity, tmp)
        for path in compiled.files:
            mlflow.log_artifact(str(path), COMPILED_DIR)
    tags = {
        **version_tags,
        **compiled.tags,
        config.TAG_ARTIFACT_SHA256: sha,
        config.TAG_ARTIFACT_PATH: config.SKOPS_FILE,
        config.TAG_SPEC_NAME: spec.name,
        **({config.TAG_ARTIFACT_LOAD_PROOF: proof} if proof else {}),
    }
    if once is not None:
        tags[TAG_TRAINING_KEY] = once[1]
    with registering_once(MlflowClient(), spec.name, active.info.run_id, once):
        registered = mlflow.register_model(
            info.model_uri, spec.name, tags={key: str(value) for key, value in tags.items()}
        )
    crash_point("after-register")
    mlflow.set_tag(config.TAG_ARTIFACT_SHA256, sha)
    return get_version(MlflowClient(), spec.name, str(registered.version))


@dataclass(frozen=True)
class LoadedModel:
    """A verified pipeline with the spec it was trained for."""

    ref: ModelRef
    pipeline: Pipeline
    spec: ModelSpec


def read_model_dir(ref: ModelRef, model_dir: str | Path) -> LoadedModel:
    """Load from a downloaded model directory after verifying its SHA-256."""
    model_dir = Path(model_dir)
    pipeline = load_pipeline(model_dir / config.SKOPS_FILE, ref.artifact_sha256)
    metadata = Model.load(str(model_dir / "MLmodel")).metadata or {}
    spec = ModelSpec.model_validate(metadata["spec"])
    return LoadedModel(ref=ref, pipeline=pipeline, spec=spec)


def download_model(ref: ModelRef, dst: str | Path) -> Path:
    """Copy the version's model directory (MLmodel, model.skops, requirements) to `dst`."""
    uri = f"models:/{ref.name}/{ref.version}"
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))


def download_compiled(ref: ModelRef, dst: str | Path) -> Path:
    """Copy the version's compiled artifact (its run's file the version's tags name) to `dst`."""
    uri = f"runs:/{ref.run_id}/{ref.tags[TAG_COMPILED_PATH]}"
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))


def load_version(ref: ModelRef) -> LoadedModel:
    """Download and verify a registered version; raises IntegrityError on a hash mismatch."""
    with tempfile.TemporaryDirectory() as tmp:
        return read_model_dir(ref, download_model(ref, tmp))
