"""How the served model does in production: realized where labels arrived, estimated elsewhere.

Labels arrive weeks after predictions, so a day's realized performance is at first unknown. A
calibrated model still says what it expects of itself: a row scored p is a positive with
probability p, so the expected confusion counts, Brier score, log loss and even ROC AUC follow
from the scores alone. Once labels arrive, realized minus estimated is the gap: near zero while
the world matches training, clearly negative (for AUC, accuracy) when the relation between
features and outcome moved, which no input-drift report can see.

A regressor's scores promise no distribution of outcomes, so regressors get realized error
metrics only (no estimate, no gap).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl

from lifecycle_assets.data.ground_truth import (
    LABEL,
    LABELLED_AT,
    PREDICTED_AT,
    PREDICTION_ID,
    PREMATURE,
    set_aside_premature,
)
from lifecycle_assets.data.prediction_log import answered
from lifecycle_assets.ml.metrics import classification_metrics, confusion_counts
from lifecycle_assets.spec import Task

# The service's decision threshold: `prediction` is 1 when the probability is at least this.
DECISION_THRESHOLD = 0.5
VERSION = "model_version"
# The prediction log's score column: the probability of a classifier, a regressor's value.
SCORE = "score"
METRICS = ("roc_auc", "log_loss", "brier", "accuracy", "precision", "recall", "positive_rate")
REGRESSION_METRICS = ("r2", "rmse", "mae", "mean_target", "mean_prediction")

_COUNTS = {VERSION: pl.String, "rows": pl.Int64}
ESTIMATED_SCHEMA = {**_COUNTS, **dict.fromkeys(METRICS, pl.Float64)}
REALIZED_SCHEMA = {**_COUNTS, "labelled_rows": pl.Int64, **dict.fromkeys(METRICS, pl.Float64)}
GAP_SCHEMA = {VERSION: pl.String, "labelled_rows": pl.Int64, **dict.fromkeys(METRICS, pl.Float64)}


def _ratio(numerator: float, denominator: float) -> float | None:
    # An undefined rate (no predicted positives, no positives) is unknown, not zero.
    return float(numerator / denominator) if denominator > 0 else None


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


def _by_version(frame: pl.DataFrame) -> Iterator[tuple[str, pl.DataFrame]]:
    frame = frame.with_columns(pl.col(VERSION).cast(pl.String).fill_null("unknown"))
    for version in sorted(frame[VERSION].unique().to_list(), key=_version_key):
        yield version, frame.filter(pl.col(VERSION) == version)


JOINED_SCHEMA = {
    PREDICTION_ID: pl.String,
    VERSION: pl.String,
    SCORE: pl.Float64,
    LABEL: pl.Float64,
    PREMATURE: pl.Boolean,
}


def join_labels(predictions: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """Every prediction with its label where one arrived (null where not), by prediction id.

    A label stamped before its prediction is not used and marks the row `PREMATURE`
    (`ground_truth.set_aside_premature`), so the report counts it.
    """
    if predictions.is_empty():
        # A day without traffic has a log without columns beyond the id and the timestamp.
        return pl.DataFrame(schema=JOINED_SCHEMA)
    timed = LABELLED_AT in labels.columns and PREDICTED_AT in predictions.columns
    labels = labels.select(
        pl.col(PREDICTION_ID).cast(pl.String),
        pl.col(LABEL).cast(pl.Float64),
        *([LABELLED_AT] if timed else []),
    )
    joined = predictions.select(
        pl.col(PREDICTION_ID).cast(pl.String),
        pl.col(VERSION).cast(pl.String),
        pl.col(SCORE).cast(pl.Float64),
        *([PREDICTED_AT] if timed else []),
    ).join(labels, on=PREDICTION_ID, how="left", maintain_order="left")
    if not timed:
        return joined.with_columns(pl.lit(False).alias(PREMATURE))
    return set_aside_premature(joined).select(*JOINED_SCHEMA)


SHADOW_OF = "shadow_of"


def join_shadow_labels(log: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    """The shadow's rows, each with the label of the answer it mirrors (`shadow_of`).

    Labels name the prediction a client received; a shadow row scored the same record, so the
    outcome is its outcome too. The shadow's own prediction id is never labelled.
    """
    if log.is_empty() or "variant" not in log.columns or SHADOW_OF not in log.columns:
        return pl.DataFrame(schema=JOINED_SCHEMA)
    shadow = log.filter(pl.col("variant") == "shadow")
    mirrored = shadow.select(pl.col(SHADOW_OF).cast(pl.String).alias(PREDICTION_ID), VERSION, SCORE)
    if PREDICTED_AT in log.columns:
        # A label is judged against the answer it names, not the shadow's later scoring.
        answers = answered(log).select(pl.col(PREDICTION_ID).cast(pl.String), PREDICTED_AT)
        mirrored = mirrored.join(answers, on=PREDICTION_ID, how="left", maintain_order="left")
    return join_labels(mirrored, labels) if shadow.height else pl.DataFrame(schema=JOINED_SCHEMA)


def expected_roc_auc(p: np.ndarray) -> float | None:
    """ROC AUC expected if each row is positive with probability p (ratio of expected pairs).

    Pairs (i, j), i != j, count with weight p_i (1 - p_j); a pair wins when p_i > p_j and counts
    half when tied, exactly as the realized AUC counts ties.
    """
    p = np.asarray(p, dtype=float)
    _, inverse = np.unique(p, return_inverse=True)
    positives = np.bincount(inverse, weights=p)
    negatives = np.bincount(inverse, weights=1.0 - p)
    below = np.cumsum(negatives) - negatives
    self_pairs = float(np.sum(p * (1.0 - p)))  # a row is never paired with itself
    pairs = float(positives.sum() * negatives.sum()) - self_pairs
    if pairs <= 1e-12:
        return None
    wins = float(np.sum(positives * (below + 0.5 * negatives))) - 0.5 * self_pairs
    return wins / pairs


def expected_metrics(proba: Any) -> dict[str, float | None]:
    """The metrics a perfectly calibrated model expects on these scores, labels unseen."""
    from scipy.special import entr

    p = np.asarray(proba, dtype=float).ravel()
    if p.size == 0 or np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError("expected metrics need a non-empty set of probabilities in [0, 1]")
    positive = p >= DECISION_THRESHOLD
    tp, fp, fn = p[positive].sum(), (1.0 - p[positive]).sum(), p[~positive].sum()
    return {
        "roc_auc": expected_roc_auc(p),
        "log_loss": float(np.mean(entr(p) + entr(1.0 - p))),
        "brier": float(np.mean(p * (1.0 - p))),
        "accuracy": float(np.mean(np.maximum(p, 1.0 - p))),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "positive_rate": float(p.mean()),
    }


def labelled_metrics(y_true: Any, proba: Any) -> dict[str, float | None]:
    """Realized metrics on labelled rows; AUC is None (not 0) when only one class arrived."""
    from sklearn import metrics as skm

    y = np.asarray(y_true).astype(int).ravel()
    p = np.asarray(proba, dtype=float).ravel()
    counts = confusion_counts(y, p, DECISION_THRESHOLD)  # validates y and p
    both_classes = 0 < int(y.sum()) < y.size
    scores = classification_metrics(y, p, DECISION_THRESHOLD) if both_classes else None
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    return {
        "roc_auc": scores["roc_auc"] if scores else None,
        "log_loss": scores["log_loss"] if scores else float(skm.log_loss(y, p, labels=[0, 1])),
        "brier": scores["brier_score"] if scores else float(np.mean((p - y) ** 2)),
        "accuracy": (tp + counts["tn"]) / y.size,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "positive_rate": float(y.mean()),
    }


def realized_performance(joined: pl.DataFrame) -> pl.DataFrame:
    """Per model version: rows, labelled rows and the metrics on the labelled ones (else null)."""
    rows = []
    for version, group in _by_version(joined):
        labelled = group.filter(pl.col(LABEL).is_not_null())
        metrics = (
            labelled_metrics(labelled[LABEL].to_numpy(), labelled[SCORE].to_numpy())
            if labelled.height
            else dict.fromkeys(METRICS)
        )
        rows.append(
            {VERSION: version, "rows": group.height, "labelled_rows": labelled.height, **metrics}
        )
    return pl.DataFrame(rows, schema=REALIZED_SCHEMA)


def estimated_performance(predictions: pl.DataFrame) -> pl.DataFrame:
    """Per model version: the metrics expected from the probabilities alone, trusting them."""
    rows = [
        {VERSION: version, "rows": group.height, **expected_metrics(group[SCORE])}
        for version, group in _by_version(predictions)
    ]
    return pl.DataFrame(rows, schema=ESTIMATED_SCHEMA)


def performance_gap(realized: pl.DataFrame, estimated: pl.DataFrame) -> pl.DataFrame:
    """Realized minus estimated per shared metric, for versions with at least one label.

    Compare like with like: estimate on the same labelled rows, or labels arriving first for
    one kind of applicant would show up as a gap.
    """
    joined = realized.filter(pl.col("labelled_rows") > 0).join(
        estimated.select(VERSION, *METRICS), on=VERSION, how="inner", suffix="_estimated"
    )
    return joined.select(
        VERSION,
        "labelled_rows",
        *[(pl.col(m) - pl.col(f"{m}_estimated")).alias(m) for m in METRICS],
    ).cast(GAP_SCHEMA)


def _first_row(frame: pl.DataFrame) -> dict[str, Any] | None:
    return {m: frame[m][0] for m in METRICS} if frame.height else None


def regression_realized(y_true: Any, predicted: Any) -> dict[str, float | None]:
    """Realized errors of a regressor on labelled rows; R² is None below two distinct labels."""
    from sklearn import metrics as skm

    y = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(predicted, dtype=float).ravel()
    return {
        "r2": float(skm.r2_score(y, p)) if np.unique(y).size > 1 else None,
        "rmse": float(np.sqrt(np.mean((y - p) ** 2))),
        "mae": float(np.mean(np.abs(y - p))),
        "mean_target": float(y.mean()),
        "mean_prediction": float(p.mean()),
    }


def _premature(joined: pl.DataFrame) -> int:
    return int(joined[PREMATURE].sum()) if PREMATURE in joined.columns else 0


def _entry(version: str, group: pl.DataFrame, task: Task) -> dict[str, Any]:
    """One version's rows, label coverage, and its realized, estimated and gap metrics."""
    labelled = group.filter(pl.col(LABEL).is_not_null())
    realized = estimated = gap = None
    if task == "regression":
        if labelled.height:
            realized = regression_realized(labelled[LABEL].to_numpy(), labelled[SCORE].to_numpy())
    else:
        estimated = _first_row(estimated_performance(group))
        if labelled.height:
            on_labelled = realized_performance(labelled)
            realized = _first_row(on_labelled)
            gap = _first_row(performance_gap(on_labelled, estimated_performance(labelled)))
    return {
        VERSION: version,
        "rows": group.height,
        "labelled_rows": labelled.height,
        "premature_labels": _premature(group),
        "label_coverage": labelled.height / group.height,
        "realized": realized,
        "estimated": estimated,
        "gap": gap,
    }


def live_report(
    joined: pl.DataFrame,
    task: Task = "binary_classification",
    shadow: pl.DataFrame | None = None,
) -> dict[str, Any]:
    """JSON-safe summary per model version and over all of them (`overall`, version "all").

    `estimated` covers every prediction; `gap` compares the realized metrics with the estimate
    on the same labelled rows; `realized` and `gap` are None until a label has arrived. For
    regressors only `realized` is filled. `shadow` (from `join_shadow_labels`) gets entries of
    its own: scored but never answered, it counts in no total and not in `overall`.
    """
    labelled = int(joined[LABEL].is_not_null().sum()) if joined.height else 0
    shadowed = shadow if shadow is not None else pl.DataFrame(schema=JOINED_SCHEMA)
    return {
        "task": task,
        "rows": joined.height,
        "labelled_rows": labelled,
        # Labels stamped before their prediction: in no metric, counted here.
        "premature_labels": _premature(joined),
        "label_coverage": labelled / joined.height if joined.height else None,
        "versions": [_entry(version, group, task) for version, group in _by_version(joined)],
        "overall": _entry("all", joined.with_columns(pl.lit("all").alias(VERSION)), task)
        if joined.height
        else None,
        "shadow": [_entry(version, group, task) for version, group in _by_version(shadowed)],
    }


def _cell(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def report_markdown(report: dict[str, Any]) -> str:
    """Realized beside estimated per version and metric, as a markdown table."""
    lines = [
        "| version | metric | realized (labelled rows) | estimated (all rows) | gap (same rows) |",
        "|---|---|---|---|---|",
    ]
    metrics = REGRESSION_METRICS if report.get("task") == "regression" else METRICS
    entries = [(e, e[VERSION]) for e in report["versions"]]
    entries += [(e, f"{e[VERSION]} (shadow)") for e in report.get("shadow", [])]
    for entry, name in entries:
        realized, gap = entry["realized"] or {}, entry["gap"] or {}
        estimated = entry["estimated"] or {}
        for metric in metrics:
            cells = (realized.get(metric), estimated.get(metric), gap.get(metric))
            lines.append(f"| {name} | {metric} | " + " | ".join(_cell(c) for c in cells) + " |")
    coverage = [
        f"- version {name}: {e['labelled_rows']}/{e['rows']} labelled"
        + (
            f" ({e['premature_labels']} label(s) stamped before their prediction, not used)"
            if e.get("premature_labels")
            else ""
        )
        for e, name in entries
    ]
    return "\n".join([*lines, "", "Label coverage:", *coverage])
