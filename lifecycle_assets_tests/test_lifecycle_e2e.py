"""The whole graph on a real Dagster instance, a real SQLite MLflow registry and BentoML store."""

import datetime as dt
import json
from pathlib import Path

import bentoml
import dagster as dg
import polars as pl
import pytest
from mlflow import MlflowClient

from lifecycle_assets import config
from lifecycle_assets.data.lake import Lake
from lifecycle_assets.data.simulator import simulate_range
from lifecycle_assets.definitions import build_definitions
from lifecycle_assets.defs import names
from lifecycle_assets.lifecycle_run import ingest_window, train_and_deploy
from lifecycle_assets.ml import gates
from lifecycle_assets.registry.refs import resolve
from lifecycle_assets.spec import ModelSpec

pytestmark = pytest.mark.e2e


def _small(spec: ModelSpec, **simulator) -> ModelSpec:
    source = spec.source.model_copy(update={"simulator": {**spec.source.simulator, **simulator}})
    training = spec.training.model_copy(update={"window_days": 20})
    return spec.model_copy(update={"source": source, "training": training})


def _run(spec: ModelSpec, refresh: bool = False):
    defs = build_definitions([spec])
    instance = dg.DagsterInstance.get()
    ingest = ingest_window(defs, spec, instance, refresh=refresh)
    return train_and_deploy(defs, spec, instance, ingest), instance


def test_full_lifecycle_promotes_then_blocks_a_bad_model(spec, lifecycle_env) -> None:
    good = _small(spec)
    summary, instance = _run(good)
    assert summary.failure is None, summary.failure
    assert summary.promoted and summary.champion_version == summary.model_version == "1"
    assert {g["name"] for g in summary.gates} == set(gates.GATE_NAMES)
    assert summary.metrics["roc_auc"] > 0.7

    client = MlflowClient()
    champion = resolve(client, spec.name, config.CHAMPION_ALIAS)
    assert champion is not None and champion.version == "1"
    for tag in (
        config.TAG_ARTIFACT_SHA256,
        config.TAG_TRAINING_DIGEST,
        config.TAG_TEST_DIGEST,
        config.TAG_DAGSTER_RUN_ID,
        config.TAG_GIT_COMMIT,
        config.TAG_BENTO_TAG,
    ):
        assert champion.tags.get(tag), f"version tag {tag} missing"
    assert champion.tags[config.TAG_DAGSTER_RUN_ID] == summary.training_run_id
    run = client.get_run(champion.run_id)
    assert run.data.tags["dagster_run_id"] == summary.training_run_id
    assert run.data.metrics["test_roc_auc"] == pytest.approx(summary.metrics["roc_auc"])
    assert {i.dataset.name for i in run.inputs.dataset_inputs} >= {f"{spec.name}-train"}
    artifacts = {a.path for a in client.list_artifacts(champion.run_id, "evaluation")}
    for name in ("roc_curve.png", "calibration.png", "confusion_matrix.png"):
        assert f"evaluation/{name}" in artifacts
    cards = {a.path for a in client.list_artifacts(champion.run_id, "model_card")}
    assert cards == {"model_card/model_card.md", "model_card/model_card.html"}
    assert summary.model_card and Path(summary.model_card).exists()

    bento = bentoml.get(summary.bento_tag)
    assert bento.info.labels or bento.tag
    training = instance.get_latest_materialization_event(names.key(spec.name, names.TRAINING_SET))
    digest = training.asset_materialization.metadata["digest"].value
    assert champion.training_digest == digest

    # Labels that carry no signal, as from a broken labelling job: the new version must not
    # become champion, and the failing gate says why with its value and threshold.
    broken, _ = _run(_small(spec, label_noise=1.0), refresh=True)
    assert broken.model_version == "2"
    assert not broken.promoted and broken.bento_tag is None
    failed = {g["name"]: g for g in broken.gates if not g["passed"]}
    assert gates.AUC_GATE in failed
    assert failed[gates.AUC_GATE]["actual"] < failed[gates.AUC_GATE]["threshold"]
    assert resolve(client, spec.name, config.CHAMPION_ALIAS).version == "1"


def test_bad_batch_is_quarantined_and_kept_out_of_training(
    tmp_path: Path, spec, lifecycle_env
) -> None:
    start = dt.date(2026, 1, 1)
    frames = [frame for _, frame in simulate_range(start, 6, rows_per_day=300)]
    frames[2] = frames[2].with_columns(
        pl.when(pl.int_range(pl.len()) < 3).then(-40.0).otherwise(pl.col("age")).alias("age")
    )
    path = tmp_path / "loans.parquet"
    pl.concat(frames).write_parquet(path)
    user = spec.model_copy(
        update={
            "source": spec.source.model_copy(update={"uri": str(path)}),
            "end_date": start + dt.timedelta(days=5),
            "training": spec.training.model_copy(update={"window_days": 6}),
        }
    )
    defs = build_definitions([user])
    outcome = ingest_window(defs, user, dg.DagsterInstance.get())
    bad_day = "2026-01-03"
    assert list(outcome.quarantined) == [bad_day]
    assert "age" in outcome.quarantined[bad_day]

    lake = Lake(lifecycle_env.lake_dir, lifecycle_env.quarantine_dir, user.name)
    record = lake.batch(bad_day)
    assert record.status == "quarantined"
    report = json.loads(Path(record.path).with_suffix(".report.json").read_text())
    assert report["failed_columns"] == ["age"] and report["failed_rows"] == [0, 1, 2]
    assert lake.read_batch(record).height == 300, "the rejected batch is kept whole"
    assert bad_day not in lake.feature_days()
    assert len(lake.feature_days()) == 5
