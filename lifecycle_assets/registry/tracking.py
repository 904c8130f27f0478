"""MLflow set-up, and the tracking of one training run: params, metrics, datasets, provenance.

Every training step gets exactly one MLflow run, opened and closed by `training_run`: the run
ends FINISHED when the step returns and FAILED when it raises, so no run is left RUNNING and no
later step (of this model or another one in the same process) can log into it.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import polars as pl
from mlflow import MlflowClient
from mlflow.entities import Metric
from sklearn.pipeline import Pipeline

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.ml.training import model_input
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.mlflow_schema import create_if_new
from lifecycle_assets.registry.models import log_and_register
from lifecycle_assets.registry.owner import TAG_HOST, TAG_PID
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.registry.same_training import training_key
from lifecycle_assets.registry.server_check import check_tracking_server
from lifecycle_assets.spec import ModelSpec


def configure_mlflow(settings: Settings) -> MlflowClient:
    """Point MLflow at the settings' store and make sure the experiment exists.

    The experiment gets an explicit artifact location so a SQLite store never scatters
    artifacts into the current working directory. A new SQLite store is created from MLflow's
    schema file (`mlflow_schema`), not by replaying every migration; MLflow creates it when the
    file does not fit.
    """
    create_if_new(settings.mlflow_tracking_uri)
    check_tracking_server(settings.mlflow_tracking_uri)
    # Progress bars on every artifact download would flood logs and the Dagster UI.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    if mlflow.get_experiment_by_name(settings.mlflow_experiment) is None:
        mlflow.create_experiment(
            settings.mlflow_experiment, artifact_location=settings.mlflow_artifact_root
        )
    return MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri)


TAG_MODEL_NAME = "model_name"


def run_name(model_name: str, dagster_run_id: str, version: str | None = None) -> str:
    """`<model>-v<N>` once the version is registered, `<model>-<dagster run id[:8]>` before."""
    return f"{model_name}-v{version}" if version else f"{model_name}-{dagster_run_id[:8]}"


@dataclass(frozen=True)
class TrainingRun:
    """The MLflow run of one training step, and how to name it after its registered version."""

    run_id: str
    experiment_id: str
    model_name: str
    dagster_run_id: str
    commit: str
    client: MlflowClient

    def name_after(self, version: str) -> str:
        name = run_name(self.model_name, self.dagster_run_id, version)
        self.client.update_run(self.run_id, name=name)
        return name


def _end(client: MlflowClient, run_id: str, status: str) -> None:
    """End our run, whether or not it is still the active run of this thread."""
    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status)
    else:
        client.set_terminated(run_id, status)


@contextmanager
def training_run(
    settings: Settings,
    model_name: str,
    dagster_run_id: str,
    tags: Mapping[str, str] | None = None,
    commit: str | None = None,
) -> Iterator[TrainingRun]:
    """Open the MLflow run of one training step; end it FINISHED, or FAILED if the body raises.

    `commit` is the caller's `git_commit()` when it already has it (one look at the tree).

    An MLflow run already active in this thread belongs to someone else: nesting under it would
    mix two trainings' params and tags, so it is refused instead.
    """
    client = configure_mlflow(settings)
    stray = mlflow.active_run()
    if stray is not None:
        raise RuntimeError(
            f"MLflow run {stray.info.run_id} is still active in this thread; "
            f"{model_name}'s training will not log into it"
        )
    experiment = client.get_experiment_by_name(settings.mlflow_experiment)
    commit = commit or git_commit()
    run = mlflow.start_run(
        experiment_id=experiment.experiment_id,
        run_name=run_name(model_name, dagster_run_id),
        tags={
            **(tags or {}),
            TAG_MODEL_NAME: model_name,
            config.TAG_DAGSTER_RUN_ID: dagster_run_id,
            config.TAG_GIT_COMMIT: commit,
            TAG_HOST: socket.gethostname(),
            TAG_PID: str(os.getpid()),
        },
    )
    tracked = TrainingRun(
        run.info.run_id, experiment.experiment_id, model_name, dagster_run_id, commit, client
    )
    try:
        yield tracked
    except BaseException:
        _end(client, tracked.run_id, "FAILED")
        raise
    _end(client, tracked.run_id, "FINISHED")


def logged_model_id(registered: Any) -> str | None:
    """The LoggedModel behind a registered version.

    The SQLite store leaves `ModelVersion.model_id` empty, but the version's source is
    `models:/<model_id>` for every model logged with MLflow 3.
    """
    if getattr(registered, "model_id", None):
        return registered.model_id
    source = registered.source or ""
    return source.removeprefix("models:/") if source.startswith("models:/m-") else None


def log_model_metrics(
    client: MlflowClient, name: str, version: str, metrics: Mapping[str, float]
) -> str | None:
    """Log metrics on the version's run AND its LoggedModel, so MLflow's model page shows them.

    Returns the LoggedModel id (None for a version registered without one).
    """
    registered = client.get_model_version(name, version)
    model_id = logged_model_id(registered)
    now = int(time.time() * 1000)
    client.log_batch(
        registered.run_id,
        metrics=[
            Metric(key, float(value), now, 0, model_id=model_id) for key, value in metrics.items()
        ],
    )
    return model_id


_ROOT = Path(__file__).resolve().parents[2]


def git_commit() -> str:
    """The commit the code ran from, with `-dirty` when the tree has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def code_identity(commit: str) -> str | None:
    """What names the code a training ran: its commit, and for a dirty tree the SHA-256 of its
    uncommitted changes too (`-dirty` alone names any edit); None when there is no commit."""
    if commit == "unknown":
        return None
    if not commit.endswith("-dirty"):
        return commit
    try:
        diff = subprocess.run(
            ["git", "diff", "HEAD"], cwd=_ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}:{hashlib.sha256(diff).hexdigest()}"


def training_key_of(training_set: dict[str, Any], commit: str) -> str | None:
    """The training key (`registry.same_training`) of fitting `training_set` with the code at
    `commit`: known before the fit, so an identical training can be found before paying for it."""
    return training_key(
        training_set["digest"], training_set.get("model_spec_sha256"), code_identity(commit)
    )


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
    commit: str | None = None,
    once: tuple[Ledger, str] | None = None,
) -> ModelRef:
    """Log params, metrics, datasets and provenance to the active run; register the version.

    The reference profile (what the training data and its scores looked like) is logged with
    the run, so drift is later judged against exactly the data this version learned from.
    With `once` (the model's ledger and the training key the caller computed before the fit),
    a version already registered for the same training set, spec and code is reused
    (`SameTrainingRegistered`), not registered again.
    """
    commit = commit or git_commit()
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
    mlflow.set_tags({config.TAG_TRAINING_DIGEST: training_set["digest"]})
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
            config.TAG_VERDICT_SEALED: "true",
        },
        once=once,
    )


def load_reference_profile(ref: ModelRef) -> dict[str, Any]:
    """The reference profile logged with the version's training run."""
    path = ref.tags.get(config.TAG_REFERENCE_PROFILE)
    if not path:
        raise LookupError(f"{ref.name} v{ref.version} was registered without a reference profile")
    return mlflow.artifacts.load_dict(f"runs:/{ref.run_id}/{path}")
