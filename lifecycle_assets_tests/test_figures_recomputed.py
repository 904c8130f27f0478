"""The evaluation's figures, recomputed here from the registered model and the stored test split.

A platform whose numbers are wrong is worse than none: after a real run (Dagster, the MLflow
SQLite registry, the lake), every test metric, the calibration error and the fairness gap of
the evaluation report, the MLflow run and the gate are computed again with scikit-learn and
numpy alone, from the artifact the registry serves and the split the training set stored.
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from sklearn import metrics as skm

from lifecycle_assets import config
from lifecycle_assets.config import Settings
from lifecycle_assets.registry.models import load_version
from lifecycle_assets.registry.refs import resolve
from lifecycle_assets.registry.tracking import configure_mlflow
from lifecycle_assets.spec import BUILTIN_SPECS_DIR, ModelSpec, load_spec
from lifecycle_assets_tests.test_lifecycle_e2e import _run, _small

pytestmark = pytest.mark.e2e


def _stored_test_split(settings: Settings, model: str) -> pl.DataFrame:
    (manifest,) = (settings.lake_dir / model / "training_sets" / "manifests").glob("*.json")
    path = json.loads(manifest.read_text())["path"]
    return pl.read_parquet(path).filter(pl.col("split") == "test")


def _classifier_figures(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    pred = (p >= 0.5).astype(int)
    # Equal-width reliability bins over [0, 1], a score of 1.0 in the last one.
    bins = np.minimum((p * 10).astype(int), 9)
    ece = sum(
        abs(p[bins == b].mean() - y[bins == b].mean()) * (bins == b).sum()
        for b in range(10)
        if (bins == b).any()
    ) / len(y)
    tpr = [pred[(groups == g) & (y == 1)].mean() for g in np.unique(groups)]
    return {
        "roc_auc": skm.roc_auc_score(y, p),
        "accuracy": skm.accuracy_score(y, pred),
        "f1": skm.f1_score(y, pred),
        "precision": skm.precision_score(y, pred),
        "recall": skm.recall_score(y, pred),
        "log_loss": skm.log_loss(y, p),
        "brier_score": skm.brier_score_loss(y, p),
        "n": len(y),
        "ece": ece,
        "fairness": max(tpr) - min(tpr),
    }


def _regressor_figures(y: np.ndarray, p: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    mae = skm.mean_absolute_error(y, p)
    slice_mae = [np.abs(y[groups == g] - p[groups == g]).mean() for g in np.unique(groups)]
    return {
        "r2": skm.r2_score(y, p),
        "rmse": np.sqrt(skm.mean_squared_error(y, p)),
        "mae": mae,
        "n": len(y),
        "fairness": (max(slice_mae) - min(slice_mae)) / mae,
    }


@pytest.mark.parametrize("spec_file", ["credit_default.yaml", "expected_loss.yaml"])
def test_evaluation_figures_match_a_recomputation(lifecycle_env: Settings, spec_file: str) -> None:
    spec: ModelSpec = _small(load_spec(BUILTIN_SPECS_DIR / spec_file))
    summary, _ = _run(spec)
    assert summary.failure is None, summary.failure
    client = configure_mlflow(lifecycle_env)
    ref = resolve(client, spec.name, config.CHAMPION_ALIAS)
    pipeline = load_version(ref).pipeline
    test = _stored_test_split(lifecycle_env, spec.name)
    x = test.select(spec.feature_names).to_pandas()
    y = test[spec.target].to_numpy()
    groups = test["__sensitive__"].fill_null("__missing__").to_numpy().astype(str)
    if spec.is_classifier:
        mine = _classifier_figures(y.astype(int), pipeline.predict_proba(x)[:, 1], groups)
        gate_metric = "equal_opportunity_difference"
    else:
        mine = _regressor_figures(y.astype(float), pipeline.predict(x), groups)
        gate_metric = "relative_mae_gap"

    stored = json.loads(
        (lifecycle_env.reports_dir / spec.name / f"v{ref.version}" / "evaluation.json").read_text()
    )
    report, run = stored["report"], client.get_run(ref.run_id).data.metrics
    for name in set(mine) - {"ece", "fairness"}:
        assert report["metrics"][name] == pytest.approx(mine[name], rel=1e-9), name
        assert run[f"test_{name}"] == pytest.approx(mine[name], rel=1e-9), name
    if "ece" in mine:
        assert report["ece"] == pytest.approx(mine["ece"], rel=1e-9)
    assert report["fairness"][gate_metric] == pytest.approx(mine["fairness"], rel=1e-9)
    gates = {gate["name"]: gate for gate in stored["gates"]}
    assert gates["fairness_gap_within_limit"]["actual"] == pytest.approx(mine["fairness"])
    primary, gate = (
        ("roc_auc", "auc_meets_minimum") if spec.is_classifier else ("r2", "r2_meets_minimum")
    )
    assert gates[gate]["actual"] == pytest.approx(mine[primary])
    # Every stored test row was scored: none silently dropped on the way.
    assert report["metrics"]["n"] == test.height
