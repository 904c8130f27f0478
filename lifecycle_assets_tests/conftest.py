"""Hermetic fixtures: a fresh project home, MLflow store, Dagster and BentoML home per test."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import mlflow
import polars as pl
import pytest
from mlflow import MlflowClient
from sklearn.pipeline import Pipeline

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.data.simulator import simulate_range
from lifecycle_assets.ml.features import feature_table
from lifecycle_assets.ml.training import fit_pipeline, model_input
from lifecycle_assets.registry.aliases import move_alias
from lifecycle_assets.registry.models import log_and_register
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.spec import ModelSpec, default_spec

# Fails the test that leaves SIGINT/SIGTERM or the blocked-signal mask changed (see the module).
pytest_plugins = ["lifecycle_assets_tests.signal_guard"]


def pytest_configure(config: pytest.Config) -> None:
    """One temporary BentoML home for the whole session.

    BentoML fixes its store when first imported, so a per-test BENTOML_HOME would leave the
    test process and the `bentoml serve` subprocesses it starts looking at different stores.
    """
    os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="lifecycle-bentoml-")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(os.environ.get("BENTOML_HOME", ""), ignore_errors=True)


@pytest.fixture(autouse=True)
def _restore_environment() -> Iterator[None]:
    """No test leaks environment variables into the next: CLI commands invoked in-process
    (`CliRunner`) export some on purpose (`run --spec` sets LIFECYCLE_SPECS for Dagster)."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def spec() -> ModelSpec:
    return default_spec()


@pytest.fixture
def lifecycle_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Point every store at a fresh temporary folder and return the resulting settings."""
    home = tmp_path / "home"
    (tmp_path / "dagster_home").mkdir()
    monkeypatch.setenv("LIFECYCLE_HOME", str(home))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("LIFECYCLE_MLFLOW_ARTIFACT_ROOT", (tmp_path / "mlartifacts").as_uri())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.setenv("GIT_PYTHON_REFRESH", "quiet")
    settings = Settings.from_env()
    configure_mlflow(settings)
    yield settings
    mlflow.end_run()


@pytest.fixture(scope="session")
def small_feature_table() -> pl.DataFrame:
    """Twenty simulated days as a feature table (about 8,000 rows)."""
    spec = default_spec()
    batches = simulate_range(dt.date(2026, 1, 1), 20, seed=42)
    return pl.concat([feature_table(frame, spec) for _, frame in batches])


def register_champion(settings: Settings, spec: ModelSpec, table: pl.DataFrame) -> ModelRef:
    """Fit `spec`'s pipeline on `table`, register it in the temporary registry, make it
    `champion`."""
    return register_pipeline(settings, spec, fit_pipeline(table, spec), table)


def register_version(
    settings: Settings, spec: ModelSpec, pipeline: Pipeline, table: pl.DataFrame
) -> ModelRef:
    """Register a fitted pipeline as a new version with its own artifact files, no alias."""
    configure_mlflow(settings)
    mlflow.set_experiment(settings.mlflow_experiment)
    with mlflow.start_run():
        return log_and_register(
            pipeline,
            spec,
            input_example=model_input(table, spec),
            version_tags={config.TAG_TRAINING_DIGEST: "test-digest"},
        )


def register_pipeline(
    settings: Settings, spec: ModelSpec, pipeline: Pipeline, table: pl.DataFrame
) -> ModelRef:
    """Register a fitted pipeline as a new version and make it `champion` (by "pytest")."""
    ref = register_version(settings, spec, pipeline, table)
    _, ref = move_alias(
        MlflowClient(settings.mlflow_tracking_uri, settings.mlflow_tracking_uri),
        spec.name,
        config.CHAMPION_ALIAS,
        ref.version,
        reason="test",
        actor="pytest",
    )
    return ref


@pytest.fixture
def registered_champion(
    lifecycle_env: Settings, spec: ModelSpec, small_feature_table: pl.DataFrame
) -> ModelRef:
    """A real registered version in the temporary MLflow registry, holding `champion`."""
    return register_champion(lifecycle_env, spec, small_feature_table)
