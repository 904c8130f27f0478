"""Plots are real PNGs without leaked figures; the model card carries every gate and number."""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from lifecycle_assets import config
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
from lifecycle_assets.ml.model_card import ModelCard
from lifecycle_assets.ml.plots import (
    calibration_png,
    confusion_matrix_png,
    roc_curve_png,
    slice_metrics_png,
)
from lifecycle_assets.registry.refs import ModelRef
from lifecycle_assets.spec import ModelSpec

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


def test_model_card_lists_gates_verdicts_and_lineage(spec: ModelSpec, tmp_path: Path) -> None:
    report, y, proba, champion = _report()
    (tmp_path / "roc_curve.png").write_bytes(roc_curve_png(y, proba, champion))
    thresholds = GateThresholds(min_roc_auc=0.99)
    split = {"rows": 1_000, "positives": 100}
    stats = {"train": split, "validation": split, "test": split}
    gates = [
        training_data_is_sane(stats, thresholds),
        auc_meets_minimum(report, thresholds),
        no_regression_vs_champion(report, thresholds),
        fairness_gap_within_limit(report, thresholds),
    ]
    tags = {config.TAG_TRAINING_DIGEST: "abc123", config.TAG_DAGSTER_RUN_ID: "dg-7",
            config.TAG_GIT_COMMIT: "deadbeef"}  # fmt: skip
    card = ModelCard.from_evaluation(
        spec,
        {
            "model": ModelRef("credit_default", "3", "run-42", "models:/m-1", tags).to_dict(),
            "report": report.to_dict(),
            "gates": [gate.to_dict() for gate in gates],
            "report_dir": str(tmp_path),
        },
        {"digest": "abc123", "days": ["2024-01-01", "2024-03-01"], "split_stats": stats},
    )
    text = card.to_markdown()
    assert text.startswith("# Model card: credit_default v3")
    for name in (DATA_GATE, AUC_GATE, REGRESSION_GATE, FAIRNESS_GATE):
        assert name in text
    auc = report.metrics["roc_auc"]
    assert f"| auc_meets_minimum | {auc:.4f} | 0.9900 | FAILED |" in text
    assert "| training_data_is_sane | 3000 | 1000 | PASSED |" in text
    assert "**auc_meets_minimum** failed" in text
    assert "**REJECTED**" in text
    for expected in ("run-42", "dg-7", "deadbeef", "abc123", "12 months", "champion v2"):
        assert expected in text
    assert f"{report.ece:.4f}" in text
    assert f"{report.metrics['roc_auc']:.4f}" in text
    assert list(card.plots) == ["roc_curve"] and "roc_curve" in text
