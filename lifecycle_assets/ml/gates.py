"""The promotion gates as pure functions: one property each, judged against `GateThresholds`.

Dagster asset checks, the CLI and the model card all call these, so a gate's verdict and its
wording exist once. Names are constants so check names and card rows cannot drift apart.
"""

from __future__ import annotations

import dataclasses
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
QUARANTINE_GATE = "quarantined_share_within_limit"


def gate_names(task: Task) -> tuple[str, ...]:
    """The gates of a task, in the order `all_gates` judges them."""
    return (
        DATA_GATE,
        QUARANTINE_GATE,
        traits(task).performance_gate,
        REGRESSION_GATE,
        FAIRNESS_GATE,
    )


# What each `GateThresholds` key (settable under `gates:` in a spec) does, for the README table
# `gate_keys_markdown` renders; a test holds README, this and the dataclass together.
GATE_KEY_HELP: dict[str, str] = {
    "min_roc_auc": f"`{CLASSIFICATION.performance_gate}`: lowest test ROC AUC (classifiers)",
    "min_r2": f"`{REGRESSION.performance_gate}`: lowest test R² (regressors)",
    "max_metric_regression": f"`{REGRESSION_GATE}`: largest drop of the primary metric "
    "against the champion on the same test rows",
    "max_fairness_gap": f"`{FAIRNESS_GATE}`: largest true-positive-rate gap between slices",
    "max_relative_error_gap": f"`{FAIRNESS_GATE}`: largest slice MAE gap relative to the "
    "overall MAE (regressors)",
    "min_training_rows": f"`{DATA_GATE}`: fewest rows in the training set (all splits)",
    "min_positive_rate": f"`{DATA_GATE}`: lowest share of positives (classifiers)",
    "max_positive_rate": f"`{DATA_GATE}`: highest share of positives (classifiers)",
    "min_rows_per_split": f"`{DATA_GATE}`: fewest rows in each of train, validation, test",
    "min_slice_size": f"`{FAIRNESS_GATE}`: fewest test rows a slice needs to be judged "
    "(smaller ones are reported as insufficient data)",
    "max_quarantined_share": f"`{QUARANTINE_GATE}`: largest share of window days whose newest "
    "batch was quarantined (0: any quarantined day blocks)",
    "max_undated_rows": f"`{QUARANTINE_GATE}`: most source rows whose event timestamp is empty "
    "or unreadable, quarantined in no day (0: any such row blocks)",
}


def gate_keys_markdown() -> str:
    """The README's table of gate keys and their defaults, from `GateThresholds` itself."""
    defaults = GateThresholds()
    lines = ["| `gates:` key | default | gate and meaning |", "|---|---|---|"]
    for item in dataclasses.fields(GateThresholds):
        value = getattr(defaults, item.name)
        lines.append(f"| `{item.name}` | {value} | {GATE_KEY_HELP[item.name]} |")
    return "\n".join(lines)


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
    """The task's performance gate: ROC AUC for classifiers, R² for regressors. A classifier
    that predicts no positive (or only positives) on the test set fails whatever its AUC: its
    decisions are constant, and every rate-based gap would read 0."""
    if report.task == "regression":
        return r2_meets_minimum(report, thresholds)
    result = auc_meets_minimum(report, thresholds)
    counts = report.confusion
    if counts:
        predicted_positive = counts.get("tp", 0) + counts.get("fp", 0)
        total = sum(counts.values())
        if predicted_positive in (0, total):
            what = "no positive" if predicted_positive == 0 else "only positives"
            description = (
                f"the model predicts {what} on {total} test rows at threshold "
                f"{report.threshold:.2f}: its decisions are constant ({result.description})"
            )
            return GateResult(AUC_GATE, False, result.actual, result.threshold, description)
    return result


def no_regression_vs_champion(report: EvaluationReport, thresholds: GateThresholds) -> GateResult:
    """The challenger's primary metric may trail the champion's on the same test set by at most
    the tolerance (ROC AUC for classifiers, R² for regressors). A champion that could not be
    scored (`champion_failure`) fails it: passing as "no champion yet" would promote past it."""
    limit = -float(thresholds.max_metric_regression)
    if report.champion_failure:
        return GateResult(REGRESSION_GATE, False, None, limit, report.champion_failure)
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
    limit = float(thresholds.max_relative_error_gap if regression else thresholds.max_fairness_gap)
    raw_gap = report.fairness.get(traits(report.task).fairness_gate_metric)
    insufficient = report.fairness.get("insufficient_data") or []
    if raw_gap is None:
        # Fewer than two slices could be judged: no gap is known, so fairness is not shown.
        description = (
            "no verdict possible, fewer than 2 slices can be compared: "
            + "; ".join(insufficient)
            + " (lower gates.min_slice_size, or bring more data)"
        )
        return GateResult(FAIRNESS_GATE, False, None, limit, description)
    gap = float(raw_gap)
    passed = gap <= limit
    groups = ", ".join(str(g) for g in report.fairness.get("groups_compared", []))
    verb = "is within" if passed else "exceeds"
    what = (
        "slice MAE gap relative to the overall MAE"
        if regression
        else "equal opportunity difference (TPR gap)"
    )
    description = f"{what} {gap:.4f} across [{groups}] {verb} the limit {limit:.4f}"
    if insufficient:
        description += "; not judged: " + "; ".join(insufficient)
    return GateResult(FAIRNESS_GATE, passed, gap, limit, description)


def quarantined_share_within_limit(
    quarantine: dict[str, Any] | None, thresholds: GateThresholds
) -> GateResult:
    """The share of the window's days whose newest batch was quarantined (and so left out of
    training) must not exceed `max_quarantined_share`, nor the source's rows of no day (event
    timestamp empty or unreadable, quarantined) `max_undated_rows`; by default any blocks.

    A row of no day may belong to the window, even to its test days: without it the training
    set is not known to be complete. When those rows are what refuses, `actual` and `threshold`
    are their count and limit; else the share of days and its limit.
    """
    limit = float(thresholds.max_quarantined_share)
    quarantine = quarantine or {}
    days = list(quarantine.get("quarantined_days", []))
    window = int(quarantine.get("window_days", 0))
    share = len(days) / window if window else 0.0
    passed = share <= limit
    if not days:
        description = f"no quarantined day in the window of {window} day(s)"
    else:
        shown = ", ".join(days[:5]) + (", ..." if len(days) > 5 else "")
        verb = "within" if passed else "exceeds"
        description = (
            f"{len(days)} of {window} window day(s) quarantined ({shown}), left out of "
            f"training: share {share:.4f} {verb} the limit {limit:.4f} "
            "(see the quarantine reports; gates.max_quarantined_share)"
        )
    undated = int(quarantine.get("undated_rows", 0))
    if not undated:
        return GateResult(QUARANTINE_GATE, passed, share, limit, description)
    most = int(thresholds.max_undated_rows)
    within = undated <= most
    verb = "within" if within else "exceeds"
    rows = (
        f"{quarantine.get('undated') or f'{undated} row(s) without a readable event timestamp'}"
        f"; {undated} row(s) of no day {verb} the limit {most} (gates.max_undated_rows)"
    )
    if within:
        return GateResult(QUARANTINE_GATE, passed, share, limit, f"{description}; {rows}")
    return GateResult(QUARANTINE_GATE, False, undated, most, f"{rows}; {description}")


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
    quarantine: dict[str, Any] | None = None,
) -> list[GateResult]:
    """Every gate in `gate_names(report.task)` order; promotion requires all of them to pass.

    `quarantine` is the training set manifest's `quarantine` entry (`WindowSelection`).
    """
    return [
        training_data_is_sane(split_stats, thresholds, report.task),
        quarantined_share_within_limit(quarantine, thresholds),
        performance_meets_minimum(report, thresholds),
        no_regression_vs_champion(report, thresholds),
        fairness_gap_within_limit(report, thresholds),
    ]
