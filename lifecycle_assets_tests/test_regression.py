"""Regressors are first-class: spec rules, metrics, gates, labels, live performance and canary
analysis judged on a regressor's own yardsticks, never a classifier's."""

import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from lifecycle_assets.data import ground_truth
from lifecycle_assets.ml import gates
from lifecycle_assets.ml.canary_analysis import analyze_canary
from lifecycle_assets.ml.evaluation import EvaluationReport, evaluate
from lifecycle_assets.ml.live_performance import join_labels, live_report
from lifecycle_assets.ml.training import fit_pipeline, predict_scores
from lifecycle_assets.spec import BUILTIN_SPECS_DIR, ModelSpec, load_spec


@pytest.fixture(scope="module")
def regressor_spec() -> ModelSpec:
    return load_spec(BUILTIN_SPECS_DIR / "expected_loss.yaml")


def _noisy_regression(n: int = 2_000, noise: float = 1.0, seed: int = 3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = 10 + 3 * x + rng.normal(scale=noise, size=n)
    groups = rng.choice(["a", "b", "c"], size=n, p=[0.45, 0.45, 0.10])
    return y, 10 + 3 * x, groups


def test_spec_validates_the_task_its_estimator_and_its_overrides(regressor_spec) -> None:
    assert regressor_spec.task == "regression" and not regressor_spec.is_classifier
    assert regressor_spec.gate_thresholds().min_r2 == pytest.approx(0.20)
    assert regressor_spec.gate_thresholds().min_roc_auc == pytest.approx(0.70), "defaults kept"
    data = regressor_spec.model_dump()
    with pytest.raises(ValueError, match="does not fit task 'regression'"):
        ModelSpec.model_validate({**data, "estimator": {"kind": "logistic_regression"}})
    with pytest.raises(ValueError, match=r"unknown gate thresholds \['min_auc'\]"):
        ModelSpec.model_validate({**data, "gates": {"min_auc": 0.9}})
    with pytest.raises(ValueError, match="unknown drift thresholds"):
        ModelSpec.model_validate({**data, "drift": {"psy": 0.3}})


def test_regression_report_and_gates(regressor_spec) -> None:
    y, predicted, groups = _noisy_regression()
    report = evaluate(y, predicted, groups, task="regression")
    assert report.task == "regression" and report.confusion == {}
    assert report.metrics["r2"] == pytest.approx(0.9, abs=0.02)
    assert report.metrics["mae"] == pytest.approx(0.8, abs=0.05)
    assert {row["group"] for row in report.slices} == {"a", "b", "c"}
    assert report.fairness["relative_mae_gap"] < 0.3
    assert EvaluationReport.from_dict(report.to_dict()) == report

    thresholds = regressor_spec.gate_thresholds()
    split_stats = {s: {"rows": 600, "distinct": 500} for s in ("train", "validation", "test")}
    verdicts = {g.name: g for g in gates.all_gates(report, split_stats, thresholds)}
    assert tuple(verdicts) == gates.gate_names("regression")
    assert all(g.passed for g in verdicts.values()), verdicts
    assert verdicts[gates.R2_GATE].threshold == pytest.approx(0.20)

    # A worse challenger on the same rows regresses on R², and a biased slice breaks fairness.
    worse = evaluate(
        y, predicted + np.random.default_rng(1).normal(scale=3, size=y.size), groups,
        champion_proba=predicted, champion_version="1", task="regression",
    )  # fmt: skip
    regression = gates.no_regression_vs_champion(worse, thresholds)
    assert not regression.passed and "r2" in regression.description
    biased = evaluate(
        y, np.where(groups == "c", predicted + 5, predicted), groups, task="regression"
    )
    fairness = gates.fairness_gap_within_limit(biased, thresholds)
    assert not fairness.passed and "relative to the overall MAE" in fairness.description

    constant = {**split_stats, "test": {"rows": 600, "distinct": 1}}
    data_gate = gates.training_data_is_sane(constant, thresholds, "regression")
    assert not data_gate.passed and "test target is constant" in data_gate.description


def test_regression_metrics_refuse_a_constant_target() -> None:
    with pytest.raises(ValueError, match="R² is undefined"):
        evaluate(np.ones(100), np.ones(100), np.array(["a", "b"] * 50), task="regression")


def test_regressor_trains_and_predicts_values(regressor_spec, small_feature_table) -> None:
    table = small_feature_table.with_columns(
        (pl.col("loan_amount") * pl.col("default") * 0.5).alias("loss_amount")
    )
    pipeline = fit_pipeline(table, regressor_spec)
    scores = predict_scores(pipeline, table.head(50), regressor_spec)
    assert scores.shape == (50,) and np.isfinite(scores).all() and (scores >= 0).all()
    assert scores.max() > 1.0, "values in money, not probabilities"


def test_amount_labels_are_read_and_scored(tmp_path: Path) -> None:
    labels = pl.DataFrame(
        {
            "prediction_id": ["p1", "p2", "p3"],
            "label": [0.0, 1250.5, 310.0],
            "labelled_at": [dt.datetime(2026, 3, 3, tzinfo=dt.UTC)] * 3,
        }
    )
    path = tmp_path / "labels.parquet"
    labels.write_parquet(path)
    with pytest.raises(ground_truth.LabelFileError, match="only 0 and 1"):
        ground_truth.read_label_file(path)
    read = ground_truth.read_label_file(path, "regression")
    predictions = pl.DataFrame(
        {
            "prediction_id": ["p1", "p2", "p3", "p4"],
            "model_version": ["2"] * 4,
            "score": [100.0, 1000.0, 300.0, 50.0],
        }
    )
    report = live_report(join_labels(predictions, read), "regression")
    overall = report["overall"]
    assert (report["labelled_rows"], overall["estimated"], overall["gap"]) == (3, None, None)
    assert overall["realized"]["mae"] == pytest.approx((100 + 250.5 + 10) / 3)


def test_regressor_canary_is_judged_on_relative_shift_and_mae() -> None:
    rng = np.random.default_rng(5)
    n = 400
    truth = rng.gamma(2.0, 500.0, 2 * n)
    champion = truth + rng.normal(0, 100, 2 * n)
    log = pl.DataFrame(
        {
            "variant": ["champion"] * n + ["canary"] * n,
            "model_version": ["1"] * n + ["2"] * n,
            "score": np.concatenate([champion[:n], champion[n:] * 1.5]),
            "label": truth,
        }
    )
    verdict = analyze_canary(log, task="regression")
    assert verdict.decision == "rollback"
    assert any("MAE" in reason for reason in verdict.reasons)
    assert verdict.canary.roc_auc is None and verdict.canary.mae is not None
