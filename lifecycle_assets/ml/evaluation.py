"""One evaluation of a model on a test set, optionally compared with the champion.

The report is a frozen, JSON-safe record: the evaluation asset logs it to MLflow, the gates
judge it and the model card renders it, so all three read the same numbers. A version's stored
`evaluation.json` is read back through `registry.gate_record`, checked against its sealed
verdict, for promotion, the scorecard and the provenance trace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

# Where the report is kept and how it is read back live apart, free of scikit-learn.
from lifecycle_assets.ml.metrics import (
    calibration_table,
    classification_metrics,
    confusion_counts,
    expected_calibration_error,
    fairness_gaps,
    slice_metrics,
)
from lifecycle_assets.ml.regression_metrics import (
    regression_calibration_table,
    regression_fairness_gaps,
    regression_metrics,
    regression_slice_metrics,
    relative_calibration_error,
)
from lifecycle_assets.ml.tasks import traits
from lifecycle_assets.spec import Task


@dataclass(frozen=True)
class ChampionComparison:
    """The champion scored on the same test rows, and challenger-minus-champion deltas."""

    champion_version: str | None
    champion_metrics: dict[str, float]
    deltas: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "champion_version": self.champion_version,
            "champion_metrics": dict(self.champion_metrics),
            "deltas": dict(self.deltas),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ChampionComparison:
        return cls(
            champion_version=data.get("champion_version"),
            champion_metrics={k: float(v) for k, v in data["champion_metrics"].items()},
            deltas={k: float(v) for k, v in data["deltas"].items()},
        )


@dataclass(frozen=True)
class EvaluationReport:
    """Everything measured about one model on one test set.

    For regressors `confusion` is empty, `threshold` unused, calibration bins are prediction
    quantiles (observed mean per bin) and `ece` is relative to the mean absolute target.
    """

    threshold: float
    metrics: dict[str, float]
    confusion: dict[str, int]
    calibration: list[dict[str, Any]]
    ece: float
    slices: list[dict[str, Any]]
    fairness: dict[str, Any]
    champion: ChampionComparison | None = None
    task: Task = "binary_classification"
    # Why the champion could not be scored (its artifact fails verification): `champion` is
    # then None, and the regression gate fails with this reason instead of passing as if there
    # were no champion.
    champion_failure: str | None = None

    @property
    def primary_metric(self) -> float:
        return float(self.metrics[traits(self.task).primary_metric])

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (plain floats, ints, strings, lists and None)."""
        return {
            "threshold": float(self.threshold),
            "metrics": {k: float(v) for k, v in self.metrics.items()},
            "confusion": {k: int(v) for k, v in self.confusion.items()},
            "calibration": [dict(row) for row in self.calibration],
            "ece": float(self.ece),
            "slices": [dict(row) for row in self.slices],
            "fairness": dict(self.fairness),
            "champion": None if self.champion is None else self.champion.to_dict(),
            "task": self.task,
            "champion_failure": self.champion_failure,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvaluationReport:
        champion = data.get("champion")
        return cls(
            threshold=float(data["threshold"]),
            metrics={k: float(v) for k, v in data["metrics"].items()},
            confusion={k: int(v) for k, v in data["confusion"].items()},
            calibration=[dict(row) for row in data["calibration"]],
            ece=float(data["ece"]),
            slices=[dict(row) for row in data["slices"]],
            fairness=dict(data["fairness"]),
            champion=None if champion is None else ChampionComparison.from_dict(champion),
            task=data.get("task", "binary_classification"),
            champion_failure=data.get("champion_failure"),
        )


def _compare(
    metrics: dict[str, float],
    champion_metrics: dict[str, float],
    champion_version: str | None,
    task: Task,
) -> ChampionComparison:
    return ChampionComparison(
        champion_version=None if champion_version is None else str(champion_version),
        champion_metrics=champion_metrics,
        deltas={k: metrics[k] - champion_metrics[k] for k in traits(task).compared_metrics},
    )


def insufficient_slices(slices: pl.DataFrame, min_slice_size: int, classifier: bool) -> list[str]:
    """Why each slice that cannot be judged is left out, in words a person can act on."""
    reasons = []
    for row in slices.filter(~pl.col("reported")).iter_rows(named=True):
        text = f"insufficient data: slice {row['group']} has {row['n']} rows"
        if classifier:
            text += f", {row['positives']} positives"
        text += f", minimum {min_slice_size} rows" + (" with both classes" if classifier else "")
        reasons.append(text)
    return reasons


def _fairness(
    slices: pl.DataFrame, gaps: Any, gate_metric: str, min_slice_size: int, classifier: bool
) -> dict[str, Any]:
    """The fairness gaps, or, when fewer than two slices can be compared, no gap and the
    reasons: a verdict the gate can state instead of a crash."""
    insufficient = insufficient_slices(slices, min_slice_size, classifier)
    if slices.filter(pl.col("reported")).height >= 2:
        return {**gaps(), "insufficient_data": insufficient}
    return {
        gate_metric: None,
        "groups_compared": [],
        "groups_excluded": slices.filter(~pl.col("reported"))["group"].to_list(),
        "insufficient_data": insufficient,
    }


def evaluate(
    y_true: np.ndarray,
    proba: np.ndarray,
    groups: np.ndarray,
    *,
    threshold: float = 0.5,
    champion_proba: np.ndarray | None = None,
    champion_version: str | None = None,
    task: Task = "binary_classification",
    min_slice_size: int = 30,
) -> EvaluationReport:
    """Score a challenger (and, if given, the champion on the same rows) into one report.

    `proba` is the model's score: the positive-class probability of a classifier, the predicted
    value of a regressor. Raises if the test set holds one class (a constant target) or fewer
    than two reportable slices: a model that cannot be measured must not reach the gates with
    invented numbers. Slices under `min_slice_size` rows (or with one class) are not judged;
    with fewer than two left the fairness gap is None and `insufficient_data` says why.
    """
    if task == "regression":
        return _evaluate_regression(
            y_true, proba, groups, champion_proba, champion_version, min_slice_size
        )
    metrics = classification_metrics(y_true, proba, threshold)
    table = calibration_table(y_true, proba)
    slices = slice_metrics(y_true, proba, groups, threshold, min_slice_size=int(min_slice_size))
    champion = None
    if champion_proba is not None:
        champion_metrics = classification_metrics(y_true, champion_proba, threshold)
        champion = _compare(metrics, champion_metrics, champion_version, task)
    return EvaluationReport(
        threshold=float(threshold),
        metrics=metrics,
        confusion=confusion_counts(y_true, proba, threshold),
        calibration=table.to_dicts(),
        ece=expected_calibration_error(table),
        slices=slices.to_dicts(),
        fairness=_fairness(
            slices,
            lambda: fairness_gaps(slices),
            traits(task).fairness_gate_metric,
            int(min_slice_size),
            classifier=True,
        ),
        champion=champion,
    )


def _evaluate_regression(
    y_true: np.ndarray,
    predicted: np.ndarray,
    groups: np.ndarray,
    champion_predicted: np.ndarray | None,
    champion_version: str | None,
    min_slice_size: int = 30,
) -> EvaluationReport:
    metrics = regression_metrics(y_true, predicted)
    table = regression_calibration_table(y_true, predicted)
    slices = regression_slice_metrics(y_true, predicted, groups, int(min_slice_size))
    champion = None
    if champion_predicted is not None:
        champion_metrics = regression_metrics(y_true, champion_predicted)
        champion = _compare(metrics, champion_metrics, champion_version, "regression")
    return EvaluationReport(
        threshold=0.0,
        metrics=metrics,
        confusion={},
        calibration=table.to_dicts(),
        ece=relative_calibration_error(table, y_true),
        slices=slices.to_dicts(),
        fairness=_fairness(
            slices,
            lambda: regression_fairness_gaps(slices, metrics["mae"]),
            traits("regression").fairness_gate_metric,
            int(min_slice_size),
            classifier=False,
        ),
        champion=champion,
        task="regression",
    )
