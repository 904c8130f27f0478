"""Gates judged against hand-built reports: verdicts, actual values, thresholds and wording."""

from __future__ import annotations

import pytest

from lifecycle_assets.config import GateThresholds
from lifecycle_assets.ml.evaluation import ChampionComparison, EvaluationReport
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

THRESHOLDS = GateThresholds(max_fairness_gap=0.15)


def make_report(
    auc: float = 0.80, tpr_gap: float = 0.05, champion_auc: float | None = None
) -> EvaluationReport:
    champion = None
    if champion_auc is not None:
        champion = ChampionComparison(
            champion_version="4",
            champion_metrics={"roc_auc": champion_auc},
            deltas={"roc_auc": auc - champion_auc},
        )
    return EvaluationReport(
        threshold=0.5,
        metrics={"roc_auc": auc},
        confusion={"tn": 1, "fp": 1, "fn": 1, "tp": 1},
        calibration=[],
        ece=0.02,
        slices=[],
        fairness={"equal_opportunity_difference": tpr_gap, "groups_compared": ["a", "b"]},
        champion=champion,
    )


def test_auc_gate_passes_and_fails_at_the_floor() -> None:
    passed = auc_meets_minimum(make_report(auc=0.70), THRESHOLDS)
    assert passed.name == AUC_GATE and passed.passed
    failed = auc_meets_minimum(make_report(auc=0.65), THRESHOLDS)
    assert not failed.passed
    assert (failed.actual, failed.threshold) == (0.65, 0.70)
    assert "0.6500" in failed.description and "0.7000" in failed.description


def test_regression_gate_passes_without_champion() -> None:
    result = no_regression_vs_champion(make_report(), THRESHOLDS)
    assert result.name == REGRESSION_GATE
    assert result.passed and result.actual is None
    assert "no champion yet" in result.description


def test_regression_of_005_fails_against_tolerance_001() -> None:
    result = no_regression_vs_champion(make_report(auc=0.80, champion_auc=0.85), THRESHOLDS)
    assert not result.passed
    assert result.actual == pytest.approx(-0.05)
    assert result.threshold == pytest.approx(-0.01)
    assert "-0.0500" in result.description and "exceeds" in result.description


def test_small_regression_within_tolerance_passes() -> None:
    result = no_regression_vs_champion(make_report(auc=0.845, champion_auc=0.85), THRESHOLDS)
    assert result.passed
    assert result.actual == pytest.approx(-0.005)


def test_fairness_gate_uses_equal_opportunity_difference() -> None:
    assert fairness_gap_within_limit(make_report(tpr_gap=0.15), THRESHOLDS).passed
    failed = fairness_gap_within_limit(make_report(tpr_gap=0.25), THRESHOLDS)
    assert failed.name == FAIRNESS_GATE and not failed.passed
    assert (failed.actual, failed.threshold) == (0.25, 0.15)
    assert "0.2500" in failed.description and "a, b" in failed.description


def _stats(rows: int = 1_000, positives: int = 100) -> dict[str, dict[str, int]]:
    return {
        split: {"rows": rows, "positives": positives} for split in ("train", "validation", "test")
    }


def test_sane_training_data_passes_with_total_rows() -> None:
    result = training_data_is_sane(_stats(), THRESHOLDS)
    assert result.name == DATA_GATE and result.passed
    assert result.actual == 3_000


def test_training_data_gate_names_every_violation() -> None:
    stats = _stats()
    stats["validation"] = {"rows": 150, "positives": 0}
    result = training_data_is_sane(stats, THRESHOLDS)
    assert not result.passed
    # The first violation is the small validation split.
    assert (result.actual, result.threshold) == (150, 200)
    assert "validation rows 150 < minimum 200" in result.description
    assert "validation lacks a class" in result.description


def test_training_data_gate_rejects_tiny_or_skewed_data() -> None:
    tiny = training_data_is_sane(_stats(rows=250, positives=50), THRESHOLDS)
    assert not tiny.passed and (tiny.actual, tiny.threshold) == (750, 1_000)
    skewed = training_data_is_sane(_stats(positives=900), THRESHOLDS)
    assert not skewed.passed
    assert skewed.actual == pytest.approx(0.9) and skewed.threshold == 0.60
    assert "positive rate 0.9000 > maximum" in skewed.description
