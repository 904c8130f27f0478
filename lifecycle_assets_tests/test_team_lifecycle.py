"""The default project's lifecycle in team mode: Dagster on PostgreSQL through the team
dagster.yaml, MLflow behind its server (PostgreSQL + S3 artifacts), the lake on S3."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
from mlflow import MlflowClient

from lifecycle_assets import config, storage
from lifecycle_assets.config import Settings
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.lifecycle_run import ingest_window, train_and_deploy
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.ledger_pg import PostgresLedger
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.team_servers import (  # noqa: F401  (fixtures)
    MlflowServer,
    S3Server,
    mlflow_server,
    moto_s3,
    postgres_url,
    team_dagster_home,
    team_environment,
)

pytestmark = pytest.mark.e2e


def _small(spec: ModelSpec) -> ModelSpec:
    training = spec.training.model_copy(update={"window_days": 10})
    return spec.model_copy(update={"training": training})


def test_the_lifecycle_runs_on_postgres_s3_and_the_mlflow_server(
    mlflow_server: MlflowServer,  # noqa: F811
    moto_s3: S3Server,  # noqa: F811
    postgres_url: str,  # noqa: F811
    spec: ModelSpec,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"lifecycle-{uuid.uuid4().hex[:8]}"
    env = {
        **team_environment(moto_s3, postgres_url, mlflow_server, prefix),
        **team_dagster_home(tmp_path / "dagster_home", postgres_url),
        "LIFECYCLE_HOME": str(tmp_path / "home"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env()
    small = _small(spec)
    defs = build_definitions([small])
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        ingest = ingest_window(defs, small, instance)
        summary = train_and_deploy(defs, small, instance, ingest)
    assert summary.failure is None, summary.failure
    assert summary.promoted and summary.champion_version == summary.model_version == "1"

    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'")
        assert cursor.fetchone()[0] == len(ingest.ingested) + 2, "ingest, training, card runs"
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    champion = client.get_model_version_by_alias(small.name, config.CHAMPION_ALIAS)
    assert champion.version == "1"
    assert client.get_run(champion.run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    ledger = Ledger.for_settings(settings)
    assert isinstance(ledger, PostgresLedger)
    assert ledger.holders(small.name)[config.CHAMPION_ALIAS].to_version == "1"
    manifests = storage.list_objects(settings.lake_dir / small.name / "raw" / "manifests")
    assert len(manifests) == len(ingest.ingested) > 0
    assert all(m.path.startswith(f"s3://{moto_s3.bucket}/{prefix}/") for m in manifests)
    assert not (tmp_path / "home" / "lake").exists(), "the lake is on S3, not on this disk"
