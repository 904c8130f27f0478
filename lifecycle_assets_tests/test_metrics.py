"""Metrics on small hand-built arrays whose answers are known exactly."""

from __future__ import annotations

import json
import math

import numpy as np
import polars as pl
import pytest

from lifecycle_assets.ml.evaluation import EvaluationReport, evaluate
from lifecycle_assets.ml.metrics import (
    calibration_table,
    classification_metrics,
    confusion_counts,
    expected_calibration_error,
    fairness_gaps,
    slice_metrics,
)


def _group(name: str, pos: int, tp: int, neg: int, fp: int) -> tuple[list, list, list]:
    """`pos` positives of which `tp` score 0.7+, `neg` negatives of which `fp` score 0.6+."""
    y = [1] * pos + [0] * neg
    proba = (
        [0.7 + 0.01 * (i % 10) for i in range(tp)]
        + [0.2 + 0.01 * (i % 10) for i in range(pos - tp)]
        + [0.6 + 0.01 * (i % 10) for i in range(fp)]
        + [0.1 + 0.01 * (i % 10) for i in range(neg - fp)]
    )
    return y, proba, [name] * (pos + neg)


def tpr_gap_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group a: TPR 0.8, FPR 0.2; group b: TPR 0.55, FPR 0.1; group c too small to report."""
    parts = [_group("a", 20, 16, 20, 4), _group("b", 20, 11, 20, 2), _group("c", 5, 5, 5, 0)]
    y, proba, groups = ([v for part in parts for v in part[i]] for i in range(3))
    return np.array(y), np.array(proba), np.array(groups)


def test_perfect_classifier_scores_one() -> None:
    result = classification_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert result["roc_auc"] == 1.0
    assert result["f1"] == 1.0
    assert result["accuracy"] == 1.0
    assert result["positive_rate"] == 0.5
    assert result["n"] == 4


def test_probabilistic_metrics_have_known_values() -> None:
    result = classification_metrics(np.array([1, 0]), np.array([0.5, 0.5]))
    assert result["log_loss"] == pytest.approx(math.log(2))
    assert result["brier_score"] == pytest.approx(0.25)
    assert result["roc_auc"] == 0.5
    # 0.5 >= threshold, so both rows are predicted positive.
    assert result["predicted_positive_rate"] == 1.0
    assert result["precision"] == 0.5
    assert result["recall"] == 1.0


def test_single_class_raises_instead_of_faking_a_metric() -> None:
    with pytest.raises(ValueError, match="only class 1"):
        classification_metrics(np.array([1, 1, 1]), np.array([0.2, 0.5, 0.9]))


def test_mismatched_lengths_raise() -> None:
    with pytest.raises(ValueError, match="rows"):
        classification_metrics(np.array([0, 1]), np.array([0.2, 0.5, 0.9]))


def test_confusion_counts_at_threshold() -> None:
    counts = confusion_counts(np.array([0, 0, 1, 1, 1]), np.array([0.1, 0.6, 0.4, 0.7, 0.9]))
    assert counts == {"tn": 1, "fp": 1, "fn": 1, "tp": 2}
    strict = confusion_counts(np.array([0, 0, 1, 1, 1]), np.array([0.1, 0.6, 0.4, 0.7, 0.9]), 0.8)
    assert strict == {"tn": 2, "fp": 0, "fn": 2, "tp": 1}


def test_calibration_table_drops_empty_bins_and_keeps_one() -> None:
    y = np.array([0, 1, 0, 1])
    proba = np.array([0.05, 0.15, 0.15, 1.0])
    table = calibration_table(y, proba, bins=10)
    assert table["count"].to_list() == [1, 2, 1]
    assert table["bin_lower"].to_list() == pytest.approx([0.0, 0.1, 0.9])
    assert table["observed_rate"].to_list() == [0.0, 0.5, 1.0]
    # |0.05-0|*1 + |0.15-0.5|*2 + |1.0-1.0|*1, over 4 rows.
    assert expected_calibration_error(table) == pytest.approx((0.05 + 0.7) / 4)


def test_slice_metrics_flags_small_and_single_class_slices() -> None:
    y, proba, groups = tpr_gap_data()
    slices = slice_metrics(y, proba, groups, min_slice_size=30)
    by_group = {row["group"]: row for row in slices.to_dicts()}
    assert set(by_group) == {"a", "b", "c"}
    assert by_group["a"]["tpr"] == pytest.approx(0.8)
    assert by_group["b"]["fpr"] == pytest.approx(0.1)
    assert by_group["a"]["reported"] and by_group["b"]["reported"]
    assert not by_group["c"]["reported"]
    only_positive = slice_metrics(np.array([1, 1, 0]), np.array([0.9, 0.8, 0.1]), ["x", "x", "y"])
    assert only_positive.filter(pl.col("group") == "x")["roc_auc"].to_list() == [None]


def test_fairness_gaps_use_reported_slices_only() -> None:
    y, proba, groups = tpr_gap_data()
    gaps = fairness_gaps(slice_metrics(y, proba, groups))
    assert gaps["equal_opportunity_difference"] == pytest.approx(0.25)
    assert gaps["equalized_odds_difference"] == pytest.approx(0.25)
    assert gaps["demographic_parity_difference"] == pytest.approx(20 / 40 - 13 / 40)
    assert gaps["groups_compared"] == ["a", "b"]
    assert gaps["groups_excluded"] == ["c"]


def test_fairness_gaps_need_two_reported_slices() -> None:
    y, proba, groups = tpr_gap_data()
    with pytest.raises(ValueError, match="at least 2 reported slices"):
        fairness_gaps(slice_metrics(y, proba, groups, min_slice_size=1_000))


def test_evaluate_compares_champion_and_round_trips_through_json() -> None:
    y, proba, groups = tpr_gap_data()
    champion = np.clip(proba + np.where(y == 1, -0.3, 0.3), 0, 1)
    report = evaluate(y, proba, groups, champion_proba=champion, champion_version="3")
    assert report.champion is not None
    assert report.champion.champion_version == "3"
    assert report.champion.deltas["roc_auc"] == pytest.approx(
        report.metrics["roc_auc"] - report.champion.champion_metrics["roc_auc"]
    )
    assert report.champion.deltas["roc_auc"] > 0
    restored = EvaluationReport.from_dict(json.loads(json.dumps(report.to_dict())))
    assert restored == report
    assert evaluate(y, proba, groups).champion is None
