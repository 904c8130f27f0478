"""One MLflow run per training step, whatever happens to the other models in the same process.

`lifecycle run` trains every model in one process. The first model fails twice here (before
its MLflow run, then inside it), the second trains: no run may stay RUNNING, and no run may
hold another model's params or tags.
"""

import os
import socket

import dagster as dg
import pytest
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs.assets import training
from lifecycle_assets.defs.metadata import rounded, rounded_metrics
from lifecycle_assets.lifecycle_run import IngestOutcome, ingest_window, train_and_deploy
from lifecycle_assets.ml import gates
from lifecycle_assets.registry import tracking
from lifecycle_assets.registry.owner import TAG_HOST, TAG_PID
from lifecycle_assets.spec import BUILTIN_SPECS_DIR, ModelSpec, load_spec

pytestmark = pytest.mark.e2e


def _small(spec: ModelSpec) -> ModelSpec:
    return spec.model_copy(update={"training": spec.training.model_copy(update={"window_days": 6})})


def test_a_failing_model_leaves_no_open_run_and_shares_none(spec, lifecycle_env, monkeypatch):
    credit = _small(spec)
    loss = _small(load_spec(BUILTIN_SPECS_DIR / "expected_loss.yaml"))
    defs = build_definitions([credit, loss])
    instance = dg.DagsterInstance.ephemeral()

    # 1. No features yet: training_set fails before any MLflow run is opened.
    no_data = train_and_deploy(defs, credit, instance, IngestOutcome())
    assert no_data.model_version is None and "day(s)" in no_data.failure

    # 2. Fitting fails inside credit_default's MLflow run.
    ingest_window(defs, credit, instance)

    def broken_fit(*args, **kwargs):
        raise RuntimeError("estimator exploded")

    with monkeypatch.context() as patch:
        patch.setattr(training, "fit_pipeline", broken_fit)
        failed = train_and_deploy(defs, credit, instance, IngestOutcome())
    assert failed.model_version is None and "trained_model" in failed.failure

    # 3. expected_loss trains in the same process right after.
    ingest_window(defs, loss, instance)
    trained = train_and_deploy(defs, loss, instance, IngestOutcome())
    assert trained.model_version == "1", trained.failure

    client = MlflowClient()
    experiment = client.get_experiment_by_name(lifecycle_env.mlflow_experiment)
    runs = {
        run.info.run_name: run
        for run in client.search_runs([experiment.experiment_id])
        if TAG_HOST in run.data.tags
    }
    assert not [name for name, run in runs.items() if run.info.status == "RUNNING"]
    assert set(runs) == {f"credit_default-{failed.training_run_id[:8]}", "expected_loss-v1"}

    broken = runs[f"credit_default-{failed.training_run_id[:8]}"]
    assert broken.info.status == "FAILED"
    assert broken.data.tags[tracking.TAG_MODEL_NAME] == "credit_default"
    assert broken.data.tags[config.TAG_DAGSTER_RUN_ID] == failed.training_run_id
    assert not broken.data.params, "the failed fit logged nothing, and nobody logged into it"

    good = runs["expected_loss-v1"]
    assert good.info.status == "FINISHED"
    tags = good.data.tags
    assert tags[tracking.TAG_MODEL_NAME] == "expected_loss"
    assert tags[config.TAG_DAGSTER_RUN_ID] == trained.training_run_id
    assert tags[TAG_HOST] == socket.gethostname()
    assert tags[TAG_PID] == str(os.getpid())
    assert tags[config.TAG_GIT_COMMIT]
    assert good.data.params["task"] == "regression"
    assert good.data.params["features"] == ",".join(loss.feature_names)

    # Evaluation and gate metrics are on the LoggedModel, not only on the run.
    version = client.get_model_version("expected_loss", "1")
    assert version.run_id == good.info.run_id
    logged = {m.key for m in client.get_logged_model(tracking.logged_model_id(version)).metrics}
    expected = {"test_r2", "test_mae", *(f"gate_{g}_passed" for g in gates.gate_names(loss.task))}
    assert expected <= logged, expected - logged


def test_the_resource_reads_mlflow_addresses_from_the_environment(lifecycle_env, monkeypatch):
    monkeypatch.setenv("LIFECYCLE_MLFLOW_UI_URL", "http://mlflow.example:5000/")
    resource = build_definitions([]).resources["mlflow"]
    assert isinstance(resource.tracking_uri, dg.EnvVar)
    assert isinstance(resource.ui_url, dg.EnvVar)
    live = resource.process_config_and_initialize()  # EnvVars resolve here, as in a run
    assert live.settings().mlflow_tracking_uri == lifecycle_env.mlflow_tracking_uri
    run_link = live.run_link("abc123", "7")
    assert run_link.value == "http://mlflow.example:5000/#/experiments/7/runs/abc123"
    assert isinstance(run_link, dg.UrlMetadataValue)

    monkeypatch.delenv("LIFECYCLE_MLFLOW_UI_URL")
    plain = build_definitions([]).resources["mlflow"].process_config_and_initialize()
    assert plain.run_link("abc123", "7") == dg.MetadataValue.text("abc123")


def test_metrics_are_rounded_to_four_significant_digits() -> None:
    values = rounded_metrics({"roc_auc": 0.812345678, "mae": 12345.678, "n": 4800, "ok": True})
    assert values == {
        "roc_auc": dg.MetadataValue.float(0.8123),
        "mae": dg.MetadataValue.float(12350.0),
    }
    assert rounded(0.0) == 0.0 and rounded(-0.000123456) == -0.0001235
