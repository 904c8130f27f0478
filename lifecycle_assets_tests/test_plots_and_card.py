"""Plots are real PNGs without leaked figures; the model card carries every gate and number."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from lifecycle_assets.config import GateThresholds
from lifecycle_assets.ml.evaluation import EvaluationReport, evaluate
from lifecycle_assets.ml.gates import (
    AUC_GATE,
    DATA_GATE,
    FAIRNESS_GATE,
    REGRESSION_GATE,
    auc_meets_minimum,
    fairness_gap_within_limit,
    no_regression_vs_champion,
    training_data_is_sane,
)
from lifecycle_assets.ml.model_card import render_model_card
from lifecycle_assets.ml.plots import (
    calibration_png,
    confusion_matrix_png,
    roc_curve_png,
    slice_metrics_png,
)

PNG_MAGIC = b"\x89PNG"


def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    proba = np.clip(0.3 * y + rng.uniform(0, 0.7, 400), 0, 1)
    champion = np.clip(0.1 * y + rng.uniform(0, 0.9, 400), 0, 1)
    groups = np.where(rng.uniform(size=400) < 0.5, "f", "m")
    return y, proba, champion, groups


def _report() -> tuple[EvaluationReport, np.ndarray, np.ndarray, np.ndarray]:
    y, proba, champion, groups = _data()
    report = evaluate(y, proba, groups, champion_proba=champion, champion_version="2")
    return report, y, proba, champion


def test_plots_return_png_bytes_and_close_figures() -> None:
    report, y, proba, champion = _report()
    before = len(plt.get_fignums())
    images = [
        roc_curve_png(y, proba),
        roc_curve_png(y, proba, champion_proba=champion),
        calibration_png(report.calibration),
        confusion_matrix_png(report.confusion),
        slice_metrics_png(report.slices),
    ]
    for image in images:
        assert image.startswith(PNG_MAGIC)
        assert len(image) > 1_000
    assert len(plt.get_fignums()) == before


def test_model_card_lists_gates_verdicts_and_lineage() -> None:
    report, *_ = _report()
    thresholds = GateThresholds(min_roc_auc=0.99)
    split = {"rows": 1_000, "positives": 100}
    gates = [
        training_data_is_sane({"train": split, "validation": split, "test": split}, thresholds),
        auc_meets_minimum(report, thresholds),
        no_regression_vs_champion(report, thresholds),
        fairness_gap_within_limit(report, thresholds),
    ]
    card = render_model_card(
        model_name="credit_default",
        version="3",
        description="Scores the risk that a credit applicant defaults within 90 days.",
        report=report,
        gates=gates,
        training={"window": "2024-01-01..2024-03-01", "train_rows": 1_000, "digest": "abc123"},
        lineage={"mlflow_run_id": "run-42", "dagster_run_id": "dg-7", "git_commit": "deadbeef"},
    )
    assert card.startswith("# Model card: credit_default v3")
    for name in (DATA_GATE, AUC_GATE, REGRESSION_GATE, FAIRNESS_GATE):
        assert name in card
    assert "| auc_meets_minimum | FAILED |" in card
    assert "| training_data_is_sane | PASSED |" in card
    assert "**auc_meets_minimum** failed" in card
    assert "gates FAILED" in card
    for text in ("run-42", "dg-7", "deadbeef", "abc123", "90 days", "champion version 2"):
        assert text in card
    assert f"{report.ece:.4f}" in card
    assert f"{report.metrics['roc_auc']:.4f}" in card
