"""MLflow set-up, and the tracking of one training run: params, metrics, datasets, provenance."""

from __future__ import annotations

import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import mlflow
import polars as pl
from mlflow import MlflowClient
from sklearn.pipeline import Pipeline

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.ml.training import model_input
from lifecycle_assets.registry.models import ModelRef, log_and_register
from lifecycle_assets.spec import ModelSpec


def configure_mlflow(settings: Settings) -> MlflowClient:
    """Point MLflow at the settings' store and make sure the experiment exists.

    The experiment gets an explicit artifact location so a SQLite store never scatters
    artifacts into the current working directory.
    """
    # Progress bars on every artifact download would flood logs and the Dagster UI.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    if mlflow.get_experiment_by_name(settings.mlflow_experiment) is None:
        mlflow.create_experiment(
            settings.mlflow_experiment, artifact_location=settings.mlflow_artifact_root
        )
    return MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)


def git_commit() -> str:
    """The commit the code ran from, with `-dirty` when the tree has uncommitted changes."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def log_datasets(table: pl.DataFrame, training_set: dict[str, Any], spec: ModelSpec) -> None:
    """Log each split to the active MLflow run with its SHA-256 as the dataset digest."""
    for split, digest in training_set["split_digests"].items():
        part = table.filter(pl.col("split") == split).drop("split")
        with warnings.catch_warnings():
            # MLflow registers the local artifact source twice and warns that a local path is
            # ambiguous between the two identical candidates.
            warnings.filterwarnings("ignore", message="The specified dataset source")
            dataset = mlflow.data.from_polars(
                part,
                source=training_set["path"],
                targets=spec.target,
                name=f"{spec.name}-{split}",
                digest=digest[:36],  # MLflow's digest column holds 36 characters
            )
        mlflow.log_input(dataset, context=split, tags={"sha256": digest})


def track_and_register(
    pipeline: Pipeline,
    table: pl.DataFrame,
    training_set: dict[str, Any],
    val_metrics: dict[str, float],
    spec: ModelSpec,
    dagster_run_id: str,
    reference_profile: dict[str, Any],
) -> ModelRef:
    """Log params, metrics, datasets and provenance to the active run; register the version.

    The reference profile (what the training data and its scores looked like) is logged with
    the run, so drift is later judged against exactly the data this version learned from.
    """
    commit = git_commit()
    mlflow.log_dict(reference_profile, config.REFERENCE_PROFILE_FILE)
    mlflow.log_params(
        {
            "task": spec.task,
            "estimator": spec.estimator.kind,
            **{f"estimator.{k}": v for k, v in spec.estimator.params.items()},
            "window_days": len(training_set["days"]),
            "window_start": training_set["days"][0],
            "window_end": training_set["days"][-1],
            "features": ",".join(spec.feature_names),
        }
    )
    mlflow.log_metrics({f"validation_{k}": float(v) for k, v in val_metrics.items()})
    log_datasets(table, training_set, spec)
    mlflow.set_tags(
        {
            config.TAG_GIT_COMMIT: commit,
            config.TAG_TRAINING_DIGEST: training_set["digest"],
            "model_name": spec.name,
        }
    )
    return log_and_register(
        pipeline,
        spec,
        input_example=model_input(table.filter(pl.col("split") == "train"), spec),
        evaluation=model_input(table.filter(pl.col("split") == "test"), spec),
        version_tags={
            config.TAG_TRAINING_DIGEST: training_set["digest"],
            config.TAG_TEST_DIGEST: training_set["split_digests"]["test"],
            config.TAG_DAGSTER_RUN_ID: dagster_run_id,
            config.TAG_GIT_COMMIT: commit,
            config.TAG_REFERENCE_PROFILE: config.REFERENCE_PROFILE_FILE,
        },
    )


def load_reference_profile(ref: ModelRef) -> dict[str, Any]:
    """The reference profile logged with the version's training run."""
    path = ref.tags.get(config.TAG_REFERENCE_PROFILE)
    if not path:
        raise LookupError(f"{ref.name} v{ref.version} was registered without a reference profile")
    return mlflow.artifacts.load_dict(f"runs:/{ref.run_id}/{path}")
