"""What differs between task types, in one table: the metric that ranks models and its gates.

Gates, the model card, the scorecard and the canary analysis all ask this module which number
matters for a model, so a regressor is never judged by a classifier's yardstick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lifecycle_assets.ml.metrics import classification_metrics
from lifecycle_assets.ml.regression_metrics import regression_metrics
from lifecycle_assets.spec import ModelSpec, Task


@dataclass(frozen=True)
class TaskTraits:
    """How one task type is measured; the primary metric is higher-is-better."""

    task: Task
    primary_metric: str
    performance_gate: str
    fairness_gate_metric: str
    # Metrics of the champion comparison kept as challenger-minus-champion deltas.
    compared_metrics: tuple[str, ...]
    # What a prediction log row's score is: a probability or a predicted value.
    score_kind: str


CLASSIFICATION = TaskTraits(
    task="binary_classification",
    primary_metric="roc_auc",
    performance_gate="auc_meets_minimum",
    fairness_gate_metric="equal_opportunity_difference",
    compared_metrics=("roc_auc", "log_loss", "brier_score", "f1"),
    score_kind="probability",
)
REGRESSION = TaskTraits(
    task="regression",
    primary_metric="r2",
    performance_gate="r2_meets_minimum",
    fairness_gate_metric="relative_mae_gap",
    compared_metrics=("r2", "rmse", "mae"),
    score_kind="predicted value",
)
_TRAITS = {t.task: t for t in (CLASSIFICATION, REGRESSION)}


def traits(task: Task | ModelSpec) -> TaskTraits:
    """The traits of a task name or of a spec's task."""
    return _TRAITS[task.task if isinstance(task, ModelSpec) else task]


def task_metrics(task: Task, y_true: Any, scores: Any) -> dict[str, float]:
    """The metrics of a task: classification on probabilities, regression on predicted values."""
    if task == "regression":
        return regression_metrics(y_true, scores)
    return classification_metrics(y_true, scores)
