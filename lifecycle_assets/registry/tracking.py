"""MLflow set-up shared by the pipeline, the service and the CLI."""

from __future__ import annotations

import os

import mlflow
from mlflow import MlflowClient

from lifecycle_assets.config import Settings


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
