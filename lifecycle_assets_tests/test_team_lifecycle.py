"""The default project's lifecycle in team mode: Dagster on PostgreSQL through the team
dagster.yaml, MLflow behind its server (PostgreSQL + S3 artifacts), the lake on S3, and the
training job's steps executed by a Celery worker process on the machine's RabbitMQ."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import dagster as dg
import psycopg2
import pytest
import yaml
from dagster._core.definitions.reconstruct import ReconstructableRepository
from mlflow import MlflowClient

from lifecycle_assets import config, storage
from lifecycle_assets.config import Settings
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs.jobs import model_card_job_name, training_job_name
from lifecycle_assets.defs.partition_ranges import contiguous_blocks
from lifecycle_assets.lifecycle_run import ingest_window
from lifecycle_assets.provenance.lineage import build_lineage
from lifecycle_assets.provenance.links import FEATURES, RAW_BATCH, TRAINING_SET
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.ledger_pg import PostgresLedger
from lifecycle_assets.spec import configured_specs
from lifecycle_assets_tests.team_servers import (  # noqa: F401  (fixtures)
    RABBITMQ_URL,
    MlflowServer,
    S3Server,
    mlflow_server,
    moto_s3,
    postgres_url,
    start_celery_worker,
    stop_group,
    team_dagster_home,
    team_environment,
    wait_for_worker,
)

pytestmark = [pytest.mark.e2e, pytest.mark.team]


REPO = Path(__file__).resolve().parents[1]


def _small_spec_file(folder: Path) -> Path:
    """The default spec on a 10-day window: the same project, a shorter training run."""
    raw = yaml.safe_load((REPO / "lifecycle_assets" / "specs" / "credit_default.yaml").read_text())
    raw["training"]["window_days"] = 10
    path = folder / "credit_default_small.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_lifecycle_runs_on_postgres_s3_the_mlflow_server_and_a_celery_worker(
    mlflow_server: MlflowServer,  # noqa: F811
    moto_s3: S3Server,  # noqa: F811
    postgres_url: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"lifecycle-{uuid.uuid4().hex[:8]}"
    queue = f"lifecycle-test-{uuid.uuid4().hex[:8]}"
    env = {
        **team_environment(moto_s3, postgres_url, mlflow_server, prefix),
        **team_dagster_home(tmp_path / "dagster_home", postgres_url),
        "LIFECYCLE_HOME": str(tmp_path / "home"),
        "LIFECYCLE_SPECS": str(_small_spec_file(tmp_path)),
        "LIFECYCLE_CELERY_BROKER": RABBITMQ_URL,
        "LIFECYCLE_CELERY_QUEUE": queue,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    worker_env = {k: v for k, v in os.environ.items() if k != "LIFECYCLE_HOME"}
    worker_env.update(LIFECYCLE_HOME=str(tmp_path / "worker_home"), PYTHONPATH=str(REPO))
    # `dagster-celery worker start` runs `celery` from PATH: the venv's own.
    worker_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{worker_env.get('PATH', '')}"
    worker = start_celery_worker(tmp_path / "worker", worker_env, RABBITMQ_URL, queue)
    try:
        settings = Settings.from_env()
        (spec,) = configured_specs()
        defs = build_definitions([spec])
        with dg.DagsterInstance.get() as instance:
            assert type(instance.run_storage).__name__ == "PostgresRunStorage"
            ingest = ingest_window(defs, spec, instance)
            assert ingest.ingested and not ingest.quarantined
            wait_for_worker(worker, tmp_path / "worker" / "worker.log")
            recon = ReconstructableRepository.for_module(
                "lifecycle_assets.definitions", "defs", working_directory=str(REPO)
            ).get_reconstructable_job(training_job_name(spec))
            with dg.execute_job(recon, instance=instance) as result:
                assert result.success, [e.message for e in result.all_events if e.is_failure]
                step_pids = {e.pid for e in result.all_events if e.step_key and e.is_step_start}
                run_id = result.run_id
            card = defs.resolve_job_def(model_card_job_name(spec)).execute_in_process(
                instance=instance
            )
            assert card.success
    finally:
        stop_group(worker)
    assert step_pids and os.getpid() not in step_pids, "every step ran outside the test"
    assert "Submitting celery task" in _run_log(instance_url=postgres_url, run_id=run_id)

    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs WHERE status = 'SUCCESS'")
        # One ingest run per block of consecutive days, then the training and card runs.
        expected = len(contiguous_blocks(ingest.ingested)) + 2
        assert cursor.fetchone()[0] == expected, "ingest, training, card"
    client = MlflowClient(mlflow_server.url, mlflow_server.url)
    champion = client.get_model_version_by_alias(spec.name, config.CHAMPION_ALIAS)
    assert champion.version == "1" and champion.tags[config.TAG_DAGSTER_RUN_ID] == run_id
    assert client.get_run(champion.run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    ledger = Ledger.for_settings(settings)
    assert isinstance(ledger, PostgresLedger)
    assert ledger.holders(spec.name)[config.CHAMPION_ALIAS].to_version == "1"
    manifests = storage.list_objects(settings.lake_dir / spec.name / "raw" / "manifests")
    assert len(manifests) == len(ingest.ingested)
    assert all(m.path.startswith(f"s3://{moto_s3.bucket}/{prefix}/") for m in manifests)
    values = storage.list_objects(settings.dagster_io_dir / spec.name)
    assert not values or all(v.path.startswith("s3://") for v in values)
    # Per run (`<asset>/<run id>.json`): overlapping runs never read each other's values.
    trained = settings.dagster_io_dir / spec.name / "trained_model" / f"{run_id}.json"
    assert storage.exists(trained), "steps hand each other values through the shared storage"
    for local in ("home", "worker_home"):
        assert not (tmp_path / local / "lake").exists(), "the lake is on S3, not on a disk"
    assert not list(tmp_path.rglob("s3:")), "no URL was taken for a local folder"

    reports = settings.reports_dir / spec.name / "v1"
    names = {info.name for info in storage.list_objects(reports)}
    assert {"evaluation.json", "model_card.html", "model_card.md"} <= names
    assert any(name.endswith(".png") for name in names), "plots are stored with the report"
    logged = {a.path for a in client.list_artifacts(champion.run_id, "evaluation")}
    assert any(path.endswith(".png") for path in logged), "MLflow got the plots from S3"
    lineage = build_lineage(settings, spec.name, "1", client)
    hashed = [n for n in lineage.nodes if "actual_sha256" in n.details]
    assert lineage.ok and hashed, [(n.id, n.status, n.reason) for n in lineage.nodes]
    lake_nodes = [n for n in hashed if n.kind in (TRAINING_SET, FEATURES, RAW_BATCH)]
    assert {n.kind for n in lake_nodes} == {TRAINING_SET, FEATURES, RAW_BATCH}
    assert all(n.details["path"].startswith("s3://") for n in lake_nodes), "re-hashed from S3"


def _run_log(instance_url: str, run_id: str) -> str:
    """The run's event messages, read straight from Dagster's PostgreSQL event log."""
    with psycopg2.connect(instance_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT event FROM event_logs WHERE run_id = %s", (run_id,))
        return "\n".join(row[0] for row in cursor.fetchall())
