"""The promotion gates as pure functions: one property each, judged against `GateThresholds`.

Dagster asset checks, the CLI and the model card all call these, so a gate's verdict and its
wording exist once. Names are constants so check names and card rows cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lifecycle_assets.config import GateThresholds
from lifecycle_assets.ml.evaluation import EvaluationReport
from lifecycle_assets.ml.tasks import CLASSIFICATION, REGRESSION, traits
from lifecycle_assets.spec import Task

AUC_GATE = CLASSIFICATION.performance_gate
R2_GATE = REGRESSION.performance_gate
REGRESSION_GATE = "no_regression_vs_champion"
FAIRNESS_GATE = "fairness_gap_within_limit"
DATA_GATE = "training_data_is_sane"


def gate_names(task: Task) -> tuple[str, ...]:
    """The gates of a task, in the order `all_gates` judges them."""
    return (DATA_GATE, traits(task).performance_gate, REGRESSION_GATE, FAIRNESS_GATE)


# A classifier's gates, the default task's.
GATE_NAMES = gate_names("binary_classification")

_SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class GateResult:
    """A gate's verdict, the measured value, the limit, and why in words."""

    name: str
    passed: bool
    actual: float | None
    threshold: float
    description: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "actual": self.actual,
            "threshold": self.threshold,
            "description": self.description,
        }


def auc_meets_minimum(report: EvaluationReport, thresholds: GateThresholds) -> GateResult:
    """The challenger's test ROC AUC must reach the floor."""
    return _meets_minimum(AUC_GATE, "ROC AUC", report.primary_metric, thresholds.min_roc_auc)


def r2_meets_minimum(report: EvaluationReport, thresholds: GateThresholds) -> GateResult:
    """The regressor's test R² must reach the floor."""
    return _meets_minimum(R2_GATE, "R²", report.primary_metric, thresholds.min_r2)


def _meets_minimum(gate: str, label: str, value: float, floor: float) -> GateResult:
    passed = value >= floor
    verb = "meets" if passed else "is below"
    return GateResult(
        gate,
        passed,
        value,
        float(floor),
        f"test {label} {value:.4f} {verb} the minimum {floor:.4f}",
    )


def performance_meets_minimum(report: EvaluationReport, thresholds: GateThresholds) -> GateResult:
    """The task's performance gate: ROC AUC for classifiers, R² for regressors."""
    if report.task == "regression":
        return r2_meets_minimum(report, thresholds)
    return auc_meets_minimum(report, thresholds)


def no_regression_vs_champion(report: EvaluationReport, thresholds: GateThresholds) -> GateResult:
    """The challenger's primary metric may trail the champion's on the same test set by at most
    the tolerance (ROC AUC for classifiers, R² for regressors)."""
    limit = -float(thresholds.max_metric_regression)
    if report.champion is None:
        return GateResult(
            REGRESSION_GATE, True, None, limit, "no champion yet: nothing to regress against"
        )
    metric = traits(report.task).primary_metric
    champion_value = float(report.champion.champion_metrics[metric])
    delta = report.primary_metric - champion_value
    passed = delta >= limit
    version = report.champion.champion_version or "unknown"
    verdict = "within" if passed else "exceeds"
    description = (
        f"challenger minus champion (v{version}, {metric} {champion_value:.4f}) {metric} is "
        f"{delta:+.4f}; a drop {verdict} the allowed regression of "
        f"{thresholds.max_metric_regression:.4f} (delta must be >= {limit:+.4f})"
    )
    return GateResult(REGRESSION_GATE, passed, delta, limit, description)


def fairness_gap_within_limit(report: EvaluationReport, thresholds: GateThresholds) -> GateResult:
    """The gap between slices must stay under the limit: the true-positive-rate gap (equal
    opportunity) for classifiers, the MAE gap relative to the overall MAE for regressors."""
    regression = report.task == "regression"
    gap = float(report.fairness[traits(report.task).fairness_gate_metric])
    limit = float(thresholds.max_relative_error_gap if regression else thresholds.max_fairness_gap)
    passed = gap <= limit
    groups = ", ".join(str(g) for g in report.fairness.get("groups_compared", []))
    verb = "is within" if passed else "exceeds"
    what = (
        "slice MAE gap relative to the overall MAE"
        if regression
        else "equal opportunity difference (TPR gap)"
    )
    description = f"{what} {gap:.4f} across [{groups}] {verb} the limit {limit:.4f}"
    return GateResult(FAIRNESS_GATE, passed, gap, limit, description)


def training_data_is_sane(
    split_stats: dict[str, dict[str, int]],
    thresholds: GateThresholds,
    task: Task = "binary_classification",
) -> GateResult:
    """Enough rows overall and per split; for classifiers both classes everywhere and a
    plausible positive rate, for regressors a target that varies in every split."""
    missing = [split for split in _SPLITS if split not in split_stats]
    if missing:
        raise ValueError(f"split_stats lacks splits {missing}; expected {list(_SPLITS)}")
    classifier = task != "regression"
    total = sum(int(split_stats[s]["rows"]) for s in _SPLITS)
    # (quantity, limit, message) for each violation, in the order they are checked.
    violations: list[tuple[float, float, str]] = []
    if total < thresholds.min_training_rows:
        message = f"total rows {total} < minimum {thresholds.min_training_rows}"
        violations.append((total, thresholds.min_training_rows, message))
    for split in _SPLITS:
        rows = int(split_stats[split]["rows"])
        if rows < thresholds.min_rows_per_split:
            message = f"{split} rows {rows} < minimum {thresholds.min_rows_per_split}"
            violations.append((rows, thresholds.min_rows_per_split, message))
        if classifier:
            pos = int(split_stats[split]["positives"])
            # Quantity = number of classes present, so actual/threshold read as "1 < 2".
            classes = int(pos > 0) + int(pos < rows)
            if classes < 2:
                message = f"{split} lacks a class ({pos} of {rows} rows positive)"
                violations.append((classes, 2, message))
        elif (distinct := int(split_stats[split]["distinct"])) < 2:
            violations.append((distinct, 2, f"{split} target is constant ({rows} rows)"))
    content = "a varying target"
    if classifier:
        positives = sum(int(split_stats[s]["positives"]) for s in _SPLITS)
        rate = positives / total if total else 0.0
        low, high = thresholds.min_positive_rate, thresholds.max_positive_rate
        if rate < low:
            violations.append((rate, low, f"positive rate {rate:.4f} < minimum {low:.4f}"))
        elif rate > high:
            violations.append((rate, high, f"positive rate {rate:.4f} > maximum {high:.4f}"))
        content = f"both classes, positive rate {rate:.4f} within [{low}, {high}]"
    if not violations:
        description = (
            f"{total} rows (>= {thresholds.min_training_rows}), every split >= "
            f"{thresholds.min_rows_per_split} rows with {content}"
        )
        return GateResult(
            DATA_GATE, True, float(total), float(thresholds.min_training_rows), description
        )
    actual, limit, _ = violations[0]
    description = "training data rejected: " + "; ".join(v[2] for v in violations)
    return GateResult(DATA_GATE, False, float(actual), float(limit), description)


def all_gates(
    report: EvaluationReport,
    split_stats: dict[str, dict[str, int]],
    thresholds: GateThresholds,
) -> list[GateResult]:
    """Every gate in `gate_names(report.task)` order; promotion requires all of them to pass."""
    return [
        training_data_is_sane(split_stats, thresholds, report.task),
        performance_meets_minimum(report, thresholds),
        no_regression_vs_champion(report, thresholds),
        fairness_gap_within_limit(report, thresholds),
    ]
