"""Two machines race to promote: two processes with working folders of their own, sharing only
PostgreSQL, S3 and an MLflow server, each expecting `champion` at v1. Exactly one wins, and the
ledger on PostgreSQL matches the registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import mlflow
import polars as pl
import pytest

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.ml.training import fit_pipeline, model_input
from lifecycle_assets.registry.aliases import move_alias, reconcile
from lifecycle_assets.registry.ledger import COMMITTED, PENDING, Ledger
from lifecycle_assets.registry.ledger_pg import PostgresLedger
from lifecycle_assets.registry.models import log_and_register
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.spec import ModelSpec
from lifecycle_assets_tests.team_servers import (  # noqa: F401  (fixtures)
    MlflowServer,
    S3Server,
    mlflow_server,
    moto_s3,
    postgres_url,
    team_environment,
)

REPO = Path(__file__).resolve().parents[1]


def test_two_machines_race_to_promote_and_exactly_one_wins(
    mlflow_server: MlflowServer,  # noqa: F811
    moto_s3: S3Server,  # noqa: F811
    postgres_url: str,  # noqa: F811
    spec: ModelSpec,
    small_feature_table: pl.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    team = team_environment(moto_s3, postgres_url, mlflow_server, f"race-{uuid.uuid4().hex[:8]}")
    for key, value in {**team, "LIFECYCLE_HOME": str(tmp_path / "parent")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env()
    client = configure_mlflow(settings)
    assert client.get_experiment_by_name(settings.mlflow_experiment).artifact_location.startswith(
        "mlflow-artifacts:"
    ), "the server's artifact destination applies to the experiment"
    mlflow.set_experiment(settings.mlflow_experiment)
    pipeline = fit_pipeline(small_feature_table, spec)
    example = model_input(small_feature_table, spec)
    for _ in range(3):
        with mlflow.start_run():
            log_and_register(pipeline, spec, input_example=example, version_tags={})
    ledger = Ledger.for_settings(settings)
    assert isinstance(ledger, PostgresLedger)
    move_alias(
        client, spec.name, config.CHAMPION_ALIAS, "1", reason="start", actor="pytest",
        ledger=ledger,
    )  # fmt: skip

    go = tmp_path / "go"
    machines = []
    for version in ("2", "3"):
        folder = tmp_path / f"machine-{version}"
        folder.mkdir()
        env = {key: value for key, value in os.environ.items() if not key.startswith("LIFECYCLE_")}
        env.update(team, LIFECYCLE_HOME=str(folder / "home"), PYTHONPATH=str(REPO))
        command = [sys.executable, "-m", "lifecycle_assets_tests.team_race_worker"]
        machines.append(
            subprocess.Popen(
                [*command, spec.name, version, str(go)],
                cwd=folder,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    go.touch()
    outcomes = []
    for machine in machines:
        out, err = machine.communicate(timeout=120)
        assert machine.returncode == 0, err[-3000:]
        outcomes.append(json.loads(out.strip().splitlines()[-1]))

    winners = [o for o in outcomes if o["won"]]
    assert len(winners) == 1, outcomes
    assert winners[0]["ledger"] == "PostgresLedger"
    loser = next(o for o in outcomes if not o["won"])
    assert f"the registry shows v{winners[0]['version']}" in loser["error"]
    champion = client.get_model_version_by_alias(spec.name, config.CHAMPION_ALIAS).version
    assert champion == winners[0]["version"]
    assert ledger.holders(spec.name)[config.CHAMPION_ALIAS].to_version == champion
    moves = [(e.from_version, e.to_version) for e in ledger.entries(spec.name, "champion")]
    assert moves == [(None, "1"), ("1", champion)], "the loser wrote nothing, not even PENDING"
    assert ledger.entries(spec.name, state=PENDING) == []
    assert all(e.state == COMMITTED for e in ledger.entries(spec.name))
    assert reconcile(client, spec.name, ledger=ledger) == [], "ledger and registry agree"
    assert not list(tmp_path.rglob("*.skops")), "model files live behind the MLflow server"
