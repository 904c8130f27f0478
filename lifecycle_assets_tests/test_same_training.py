"""Two identical `lifecycle run`s of one model at once (the schedule and a manual run: same data,
same spec, same code) register one MLflow model version, not two copies of it; the second run
keeps its tracked MLflow run, tagged as a duplicate of the first's version, and says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from mlflow import MlflowClient

from lifecycle_assets.config import Settings
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.lifecycle_run import ingest_window
from lifecycle_assets.registry.same_training import (
    TAG_DUPLICATE_OF_RUN,
    TAG_DUPLICATE_OF_VERSION,
    TAG_TRAINING_KEY,
)
from lifecycle_assets.registry.tracking import TAG_MODEL_NAME, configure_mlflow
from lifecycle_assets.spec import load_spec
from lifecycle_assets_tests.small_project import project_env, write_spec

pytestmark = pytest.mark.e2e

LIFECYCLE = str(Path(sys.executable).with_name("lifecycle"))


def test_two_identical_concurrent_trainings_register_one_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = project_env(tmp_path)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    path = write_spec(tmp_path)
    # A gate no version passes: nothing is ever promoted, so "the champion was trained on this
    # very set" never stops the second run; only the registry's own memory of the training can.
    raw = yaml.safe_load(path.read_text())
    raw["gates"]["min_roc_auc"] = 0.9999
    path.write_text(yaml.safe_dump(raw))
    spec = load_spec(path)
    configure_mlflow(Settings.from_env())
    ingest_window(build_definitions([spec]), spec, dg.DagsterInstance.get())

    children = [
        subprocess.Popen(
            [LIFECYCLE, "run", "--spec", str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, **env, "COLUMNS": "400"},
        )
        for _ in range(2)
    ]
    consoles = []
    for child in children:
        console, _ = child.communicate(timeout=600)
        consoles.append((child.returncode, console))

    client = MlflowClient()
    versions = client.search_model_versions(f"name = '{spec.name}'")
    assert [str(v.version) for v in versions] == ["1"], consoles
    (version,) = versions
    assert version.tags[TAG_TRAINING_KEY]
    runs = client.search_runs(
        [client.get_experiment_by_name(Settings.from_env().mlflow_experiment).experiment_id],
        filter_string=f"tags.{TAG_MODEL_NAME} = '{spec.name}'",
    )
    # Both trainings were tracked and ended; the one that did not register says whose it is.
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs), runs
    (duplicate,) = [r for r in runs if r.info.run_id != version.run_id]
    assert duplicate.data.tags[TAG_DUPLICATE_OF_VERSION] == "1"
    assert duplicate.data.tags[TAG_DUPLICATE_OF_RUN] == version.run_id

    line = f"v1 already holds this training (run {version.run_id})"
    refused = [c for code, c in consoles if code == 3]
    reused = [(code, c) for code, c in consoles if line in c]
    # The first run's version was judged (and refused by its gate); the second reused it.
    assert len(refused) == 1 and len(reused) == 1, consoles
    code, console = reused[0]
    assert code == 0, console[-3000:]
    assert f"{spec.name}: {line}; no new version, no champion yet." in console
    runs_dir = Settings.from_env().reports_dir / spec.name / "runs"
    summaries = [json.loads(path.read_text()) for path in runs_dir.glob("*.json")]
    (summary,) = [s for s in summaries if s["outcome"] == "unchanged"]
    assert summary["failure"] == line and summary["model_version"] is None
