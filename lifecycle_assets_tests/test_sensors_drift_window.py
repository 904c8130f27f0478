"""Drift while the training window holds only the champion's training set: the drift sensor
waits for newer data instead of requesting a retrain that would register nothing.

Seen live under `dagster dev`: the sensor requested training, the run succeeded with "nothing
changed: training set ... is champion v1's; no new version", and the sensor counted it as the
episode's retrain (24 h cooldown): a green run for a reaction that never happened.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import pytest
from mlflow import MlflowClient

from lifecycle_assets.config import Settings
from lifecycle_assets.data.simulator import simulate_day
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs.jobs import training_job_name
from lifecycle_assets.lifecycle_run import ingest_window, train_and_deploy
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.run_submission import execute
from lifecycle_assets.spec import ModelSpec, load_spec
from lifecycle_assets_tests.small_project import project_env, write_spec
from lifecycle_assets_tests.test_sensors_drift import DriftTicker, _reports

pytestmark = pytest.mark.e2e

FIRST_DAY = dt.date(2026, 1, 3)


def _land(folder: Path, day: dt.date) -> None:
    simulate_day(day, rows_per_day=250).write_parquet(folder / f"{day}.parquet")


def _folder_spec(tmp_path: Path, landing: Path) -> ModelSpec:
    """The small project's classifier reading a landing folder: its window ends on the newest
    landed day, so only landed data moves it."""
    spec = load_spec(write_spec(tmp_path, window_days=5))
    return spec.model_copy(
        update={
            "source": spec.source.model_copy(update={"uri": str(landing), "format": "parquet"}),
            "start_date": FIRST_DAY,
            "end_date": None,
        }
    )


def _versions(spec: ModelSpec) -> list[str]:
    found = MlflowClient().search_model_versions(f"name='{spec.name}'")
    return sorted(str(version.version) for version in found)


def test_drift_on_the_champions_own_window_waits_for_newer_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in project_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    landing = tmp_path / "landing"
    landing.mkdir()
    for offset in range(5):
        _land(landing, FIRST_DAY + dt.timedelta(days=offset))
    spec = _folder_spec(tmp_path, landing)
    defs = build_definitions([spec])
    configure_mlflow(Settings.from_env())
    instance = dg.DagsterInstance.get()
    summary = train_and_deploy(defs, spec, instance, ingest_window(defs, spec, instance))
    assert summary.promoted and summary.champion_version == "1", summary.failure

    tick = DriftTicker(spec, instance)
    tick()
    _reports(instance, spec, [("2026-01-08", ["income"])])
    waiting = tick()
    assert not waiting.run_requests
    assert "drift on 2026-01-08 in ['income']" in waiting.skip_message
    assert "holds only v1's training set" in waiting.skip_message
    assert (
        "land newer labelled data: the window ends 2026-01-07, champion v1 was trained on it"
        in waiting.skip_message
    )
    state = json.loads(tick.cursor)
    assert "triggered_at" not in state, "a retrain never requested spent the cooldown"
    assert state["pending"]["drift"] == "2026-01-08 in ['income']"

    # The sensor's verdict is the training asset's: the run it held back registers nothing.
    training = defs.resolve_job_def(training_job_name(spec))
    assert execute(training, instance).success
    assert _versions(spec) == ["1"]

    again = tick()
    assert not again.run_requests, "still nothing newer: the drift keeps waiting"
    assert "no feature partition materialized since" in again.skip_message
    assert "the window ends 2026-01-07" in again.skip_message

    # Newer data lands and is ingested: the waiting drift is retrained on, once.
    _land(landing, FIRST_DAY + dt.timedelta(days=5))
    ingest_window(defs, spec, instance)
    (request,) = tick().run_requests
    assert request.tags["lifecycle/reason"] == "drift on 2026-01-08 in ['income']"
    assert request.run_key.startswith("drift-retrain-2026-01-08-")
    state = json.loads(tick.cursor)
    assert "pending" not in state and "triggered_at" in state
    assert not tick().run_requests, "the episode's one retrain was requested"
    assert execute(training, instance, tags=request.tags).success
    assert _versions(spec) == ["1", "2"], "the retrain trained on the newer data"
