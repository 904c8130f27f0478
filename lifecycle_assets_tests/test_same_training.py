"""Two identical `lifecycle run`s of one model at once (the schedule and a manual run: same data,
same spec, same code) register one MLflow model version, not two copies of it. The model's
training pool makes their training steps take turns, so the second finds the first's version by
its training key before fitting: it fits nothing, opens no MLflow run, and says so. Trainings
that both looked before either registered (no pool between them) are caught under the model's
lock when registering: the later one's run is kept and tagged as a duplicate (the last test).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import mlflow
import polars as pl
import pytest
import yaml
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs import names
from lifecycle_assets.lifecycle_run import ingest_window
from lifecycle_assets.ml.training import fit_pipeline, model_input
from lifecycle_assets.registry.ledger import Ledger
from lifecycle_assets.registry.models import log_and_register
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.registry.same_training import (
    TAG_DUPLICATE_OF_RUN,
    TAG_DUPLICATE_OF_VERSION,
    TAG_TRAINING_KEY,
    SameTrainingRegistered,
)
from lifecycle_assets.registry.tracking import TAG_MODEL_NAME, configure_mlflow
from lifecycle_assets.spec import ModelSpec, load_spec
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
    # One training was fit and tracked: the other found its version before fitting (before, it
    # fit, logged a model and registered it again only to find the copy under the lock).
    assert [r.info.run_id for r in runs] == [version.run_id], runs
    assert runs[0].info.status == "FINISHED"

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
    # The Dagster UI says which version was reused and why nothing was fit.
    observations = dg.DagsterInstance.get().fetch_observations(
        names.key(spec.name, names.TRAINED_MODEL), limit=10
    )
    (observed,) = [o.asset_observation.metadata for o in observations.records]
    assert observed[names.SAME_TRAINING_METADATA_KEY].value == line
    assert observed["fit"].value.startswith("skipped"), observed


def test_a_training_registered_during_the_fit_is_found_under_the_lock(
    lifecycle_env: Settings, spec: ModelSpec, small_feature_table: pl.DataFrame
) -> None:
    """Both trainings looked before either registered: registering looks the key up again under
    the model's lock, so the later one registers nothing and its run says whose version it is."""
    pipeline = fit_pipeline(small_feature_table, spec)
    ledger = Ledger.for_settings(lifecycle_env)
    client = configure_mlflow(lifecycle_env)
    mlflow.set_experiment(lifecycle_env.mlflow_experiment)

    def register() -> ModelRef:
        return log_and_register(
            pipeline,
            spec,
            input_example=model_input(small_feature_table, spec),
            version_tags={config.TAG_TRAINING_DIGEST: "same-data"},
            once=(ledger, "same-training-key"),
        )

    with mlflow.start_run() as first:
        ref = register()
    with mlflow.start_run() as second, pytest.raises(SameTrainingRegistered) as raised:
        register()
    assert raised.value.ref.version == ref.version
    tags = client.get_run(second.info.run_id).data.tags
    assert tags[TAG_DUPLICATE_OF_VERSION] == ref.version
    assert tags[TAG_DUPLICATE_OF_RUN] == first.info.run_id
    assert [str(v.version) for v in client.search_model_versions(f"name = '{spec.name}'")] == ["1"]
